"""Every case of the bad-input corpus (:mod:`bad_inputs`) through the CLI: exit non-zero, one
``difforge: error:`` line naming the culprit, no traceback, and nothing saved changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from bad_inputs import CASES, INPUT_COMMANDS, Inputs

from difforge.cli import BUILTIN_COMMANDS, main


def snapshot(folder: Path) -> dict[str, str] | None:
    """SHA-256 of every file under ``folder`` (``None`` when it does not exist)."""
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def inputs(tiny_sd_dir, toy_images, tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("bad-inputs")
    config = {
        "model": {"pretrained": str(tiny_sd_dir)},
        "data": {"dataset": "image-folder", "options": {"path": str(toy_images), "resolution": 32}, "batch_size": 4},
        "adapter": {"type": "lora", "options": {"rank": 4}},
        "train": {"steps": 2, "seed": 0},
        "output": {"dir": str(root / "prior"), "tensorboard": False, "progress": False, "checkpoint_every": 1,
                   "report": False},
    }
    import difforge

    result = difforge.train(config)
    return Inputs(root=root, pipeline=tiny_sd_dir, images=toy_images, lora=result.adapter_path, config=config,
                  prior_run=result.output_dir)


def test_every_command_that_reads_input_is_in_the_corpus():
    assert set(BUILTIN_COMMANDS) - {"plugins"} == set(INPUT_COMMANDS)
    for command in INPUT_COMMANDS:
        assert any(c.command == command for c in CASES), command
    assert len({c.name for c in CASES}) == len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, inputs, tmp_path, capsys):
    argv = case.make(inputs, tmp_path)
    before = snapshot(inputs.prior_run)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    err = capsys.readouterr().err
    assert code == case.exit_code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err[-3000:]
    if case.exit_code == 1:
        assert errors[0].startswith("difforge: error: ")
    assert case.names(inputs, tmp_path) in errors[0], errors[0]
    assert snapshot(inputs.prior_run) == before
    assert not (tmp_path / "run").exists() or case.name == "report-damaged-history"
    assert not (tmp_path / "out.png").exists()
