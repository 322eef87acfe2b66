"""The command line: --version, --help everywhere, train and sample end to end, errors."""

import json

import pytest
import yaml
from helpers import pixel_unet_config, run_cli
from PIL import Image

import difforge


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"difforge {difforge.__version__}"


def test_every_command_has_help(capsys):
    from difforge.cli import BUILTIN_COMMANDS, main

    top = run_cli("--help")  # through the executable once; each command's help in this process
    assert top.returncode == 0
    for name, command in BUILTIN_COMMANDS.items():
        assert name in top.stdout
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0 and command.help in capsys.readouterr().out, name


def test_train_then_sample_with_the_lora(tiny_sd_dir, toy_images, tmp_path):
    config = {
        "model": {"pretrained": str(tiny_sd_dir)},
        "data": {"dataset": "image-folder", "options": {"path": str(toy_images)}, "batch_size": 4},
        "adapter": {"type": "lora"},
        "train": {"steps": 2},
        "output": {"dir": "unused", "tensorboard": False},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("train", str(tmp_path / "run.yaml"), "--set", f"output.dir={tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained 2 steps" in proc.stdout and str(tmp_path / "out" / "adapter") in proc.stdout
    proc = run_cli("sample", "--model", str(tiny_sd_dir), "--prompt", "a red circle", "--prompt", "a blue square",
                   "--adapter", f"{tmp_path / 'out' / 'adapter'}:0.8", "--steps", "2", "--out", str(tmp_path / "s.png"),
                   "--metric", "pixel-statistics")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Image.open(tmp_path / "s.png").size[0] > 64
    assert json.loads((tmp_path / "s.json").read_text())["pixel-statistics"]["diversity"] > 0


def test_bad_config_is_one_line_error_and_exit_1(toy_images, tmp_path):
    config = pixel_unet_config(toy_images, tmp_path / "run")
    config["train"]["lr"] = "fast"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("train", str(tmp_path / "bad.yaml"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"difforge: error: {tmp_path / 'bad.yaml'}: train.lr:")
    assert "(got 'fast')" in lines[0]


def test_missing_or_pickled_adapter_is_one_line_error(tiny_sd_dir, tmp_path, capsys):
    from difforge.cli import main

    (tmp_path / "lora.pt").write_bytes(b"\x80\x04 a pickle")
    (tmp_path / "empty").mkdir()
    for adapter, message in ((tmp_path / "nowhere", "no such file or directory"),
                             (tmp_path / "lora.pt", "adapters load only from .safetensors files"),
                             (tmp_path / "empty", "no .safetensors file in this directory")):
        code = main(["sample", "--model", str(tiny_sd_dir), "--prompt", "a red circle", "--adapter", str(adapter),
                     "--steps", "1", "--out", str(tmp_path / "s.png")])
        stderr = capsys.readouterr().err
        assert code == 1
        errors = [line for line in stderr.splitlines() if line.startswith("difforge")]
        assert errors == [f"difforge: error: adapter {adapter}: {message}"], stderr[-1000:]
    assert not (tmp_path / "s.png").exists()
