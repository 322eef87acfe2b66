"""difforge-clip's input surfaces in the bad-input corpus: a student folder that is not a CLIP,
a damaged config or weights file, NaN weights, pickled weights only, bad numbers — each one
``difforge: error:`` line naming the file or flag, and nothing written."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from difforge.plugin_api import cli_main as main
from difforge_clip.student import clip_dir


def _copy_of_zoo_clip(d):
    target = d / "student"
    shutil.copytree(clip_dir("shapes-sd-tiny"), target)
    return target


def _nan_weights(d):
    target = _copy_of_zoo_clip(d)
    state = load_file(target / "model.safetensors")
    key = next(k for k in state if k.endswith("visual_projection.weight"))
    state[key][0, 0] = float("nan")
    save_file(state, str(target / "model.safetensors"))
    return target


def _truncated_weights(d):
    target = _copy_of_zoo_clip(d)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return target


def _pickled_only(d):
    target = _copy_of_zoo_clip(d)
    torch.save({}, target / "pytorch_model.bin")
    (target / "model.safetensors").unlink()
    return target


def _config_not_json(d):
    target = _copy_of_zoo_clip(d)
    (target / "config.json").write_text("{not json")
    return target


def _not_a_clip(d):
    target = d / "student"
    target.mkdir()
    (target / "config.json").write_text('{"model_type": "bert"}')
    return target


CASES = {"nan-weights": (_nan_weights, "NaN"), "truncated-weights": (_truncated_weights, "cannot be loaded"),
         "pickled-only": (_pickled_only, "safetensors only"), "config-not-json": (_config_not_json, "not a JSON"),
         "not-a-clip": (_not_a_clip, "holds a CLIPModel")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_student_is_one_line_naming_it(name, tmp_path, capsys):
    make, says = CASES[name]
    bad = make(tmp_path)
    out = tmp_path / "out.json"
    code = main(["clip-eval", "--clip", str(bad), "--count", "1", "--json", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("difforge: error: ") and str(bad) in errors[0], err[-2000:]
    assert says in errors[0] and not out.exists()


def test_a_bad_distill_run_writes_nothing(tmp_path, capsys):
    code = main(["clip-distill", "--method", "sds-clip", "--steps", "0", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code != 0 and "train.steps" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
