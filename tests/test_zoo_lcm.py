"""shapes-lcm-tiny: the consistency-distilled zoo model loads offline in diffusers
(LatentConsistencyModelPipeline) and difforge, its card's spot check is reproduced, and at 4
steps it beats its teacher sampled with the same 4 steps (the distillation's effect)."""

import json
import statistics
import sys

import pytest
import torch
from helpers import ROOT, assert_small_safetensors_model

import difforge
import difforge_zoo

sys.path.insert(0, str(ROOT / "packages" / "zoo" / "training"))
import train_shapes_lcm  # noqa: E402

MODEL = difforge_zoo.load("shapes-lcm-tiny")
TEACHER = difforge_zoo.load("shapes-sd-tiny")
CARD = json.loads((MODEL / "metrics.json").read_text())
SETS = list(train_shapes_lcm.PROMPT_SETS)


def test_diffusers_lcm_pipeline_loads_and_samples_offline():
    from diffusers import LCMScheduler

    pipe = difforge_zoo.load("shapes-lcm-tiny", as_pipeline=True)
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.unet.config.time_cond_proj_dim == 256
    image = pipe("a red circle", num_inference_steps=4, guidance_scale=4.0, output_type="pt",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 3, 32, 32)


def test_difforge_loads_it_as_a_guidance_embedding_model():
    backbone = difforge.load_backbone("shapes-lcm-tiny")
    assert backbone.embeds_guidance and type(backbone.scheduler).__name__ == "LCMScheduler"


def test_weights_are_small_and_safetensors_only():
    assert_small_safetensors_model(MODEL)


@pytest.fixture(scope="module")
def measured():
    """The card's spot check, re-measured."""
    return train_shapes_lcm.spot_check(MODEL, TEACHER, CARD["spot_check"]["per_prompt"], seed=CARD["seed"])


@pytest.mark.parametrize("setting", ["student_4", "teacher_ddim_4"])
def test_the_cards_spot_check_is_reproduced(measured, setting):
    for prompts in SETS:
        for key, value in CARD["spot_check"][setting][prompts].items():
            assert measured[setting][prompts][key] == pytest.approx(value, abs=0.03), (setting, prompts, key)


def test_four_consistency_steps_beat_the_teacher_at_four_steps(measured):
    """The simplest alternative to distillation is the teacher with as few steps: at 4 steps the
    student (4 UNet calls) is more accurate than the teacher (8 calls, with its guidance), on the
    card's full evaluation and on the re-measured spot check."""
    def mean_full(m: dict) -> float:
        return statistics.mean(m[prompts]["full_accuracy"] for prompts in SETS)

    assert mean_full(CARD["student"]["4"]) > mean_full(CARD["teacher_ddim"]["4"]) + 0.1
    assert mean_full(measured["student_4"]) > mean_full(measured["teacher_ddim_4"]) + 0.1


def test_the_card_is_the_scripts_output():
    log = json.loads((MODEL / "training_log.json").read_text())
    assert (MODEL / "README.md").read_text() == train_shapes_lcm.card_text(log, CARD)


def test_the_distill_readme_quotes_the_card():
    readme = (ROOT / "packages" / "distill" / "README.md").read_text().replace("\n", " ")
    held = "single_heldout_combination"
    student, ddim = CARD["student"], CARD["teacher_ddim"]
    assert (f"{student['4'][held]['full_accuracy']:.3f} at 4 steps (4 UNet calls) and "
            f"{student['2'][held]['full_accuracy']:.3f} at 2, against the teacher's "
            f"{CARD['teacher'][held]['full_accuracy']:.3f} at 30 DDIM steps (60 calls) and "
            f"{ddim['4'][held]['full_accuracy']:.3f} when") in readme
    assert (f"({student['8'][held]['full_accuracy']:.3f} at 8, where the teacher's 8 DDIM steps reach "
            f"{ddim['8'][held]['full_accuracy']:.3f})") in readme
