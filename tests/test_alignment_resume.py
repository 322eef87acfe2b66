"""On-policy objectives resume exactly: a run resumed from a checkpoint taken in the middle of
a sampling round (DDPO, RLCM, TexForce, D3PO) or of a reference history (SePPO) ends with the
same weights and losses, bit for bit, as the uninterrupted run."""

import json

import pytest
import torch
from safetensors.torch import load_file

import difforge
from difforge.errors import TrainingError

PROMPTS = {"dataset": "prompts", "options": {"prompts": ["a red circle", "a blue square on the left",
                                                         "a green triangle", "a purple circle at the top"]}}
SHAPES = {"dataset": "shapes", "options": {"count": 8, "split": "heldout", "num_objects": 1}}
ROUND = {"num_steps": 4, "minibatch_size": 2, "inner_epochs": 2}


def _config(objective, options, data, out, resume=None, component="unet"):
    adapter = {"type": "lora", "options": {"rank": 2}}
    if component == "text_encoder":
        adapter.update(component="text_encoder", options={"rank": 2, "target_modules": ["q_proj", "v_proj"]})
    return {"model": {"pretrained": "shapes-sd-tiny"}, "data": {**data, "batch_size": 2}, "adapter": adapter,
            "objective": {"name": objective, "options": options},
            "train": {"steps": 6, "lr": 1e-3, "seed": 0, "resume": resume},
            "output": {"dir": str(out), "checkpoint_every": 3, "keep_last": 5, "tensorboard": False, "progress": False}}


@pytest.mark.parametrize("objective,options,data,component", [
    ("ddpo", {"reward": "colourfulness", "samples_per_prompt": 2, **ROUND}, PROMPTS, "unet"),
    ("rlcm", {"reward": "colourfulness", "samples_per_prompt": 2, **ROUND}, PROMPTS, "unet"),
    ("texforce", {"reward": "colourfulness", "samples_per_prompt": 2, **ROUND}, PROMPTS, "text_encoder"),
    ("d3po", {"labeller": "colourfulness", "pairs_per_prompt": 2, "minibatch_size": 1, "inner_epochs": 2,
              "num_steps": 4}, PROMPTS, "unet"),
    ("seppo", {"beta": 2000.0, "ref_strategy": "random", "ref_interval": 2, "num_steps": 2}, SHAPES, "unet"),
])
def test_a_run_resumed_mid_round_matches_the_uninterrupted_run(tmp_path, objective, options, data, component):
    full = difforge.train(_config(objective, options, data, tmp_path / "full", component=component))
    middle = tmp_path / "full" / "checkpoint-3"
    assert (middle / "objective_state-0.json").exists()
    resumed = difforge.train(_config(objective, options, data, tmp_path / "resumed", str(middle), component))
    assert resumed.losses == full.losses
    expected = load_file(str(tmp_path / "full" / "checkpoint-6" / "trainable.safetensors"))
    got = load_file(str(tmp_path / "resumed" / "checkpoint-6" / "trainable.safetensors"))
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_objective_state_for_an_objective_that_keeps_none_is_refused():
    from difforge.training import DenoisingObjective

    objective = DenoisingObjective.__new__(DenoisingObjective)
    objective.load_state_dict({})  # nothing to restore: fine
    with pytest.raises(TrainingError, match="objective denoising: the checkpoint holds objective state"):
        objective.load_state_dict({"round.latents": torch.zeros(1)})


def test_a_checkpoint_without_objective_state_resumes_with_a_fresh_round(tmp_path):
    """Checkpoints written before objectives kept state still resume (not exactly: a new round)."""
    options = {"reward": "colourfulness", "samples_per_prompt": 2, **ROUND}
    difforge.train(_config("ddpo", options, PROMPTS, tmp_path / "full"))
    middle = tmp_path / "full" / "checkpoint-3"
    for old in middle.glob("objective_state-*"):
        old.unlink()
    marker = middle / "difforge_checkpoint.json"  # as written then: no manifest of the files
    marker.write_text(json.dumps({"step": 3}))
    resumed = difforge.train(_config("ddpo", options, PROMPTS, tmp_path / "resumed", str(middle)))
    assert resumed.steps == 6 and len(resumed.losses) == 6
