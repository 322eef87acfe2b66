"""shapes-sd-tiny: loads offline in diffusers and difforge, and its model card's quality
numbers are reproduced (same seeds) and meet the bar of the model-zoo issue."""

import json
import sys

import pytest
import torch
from diffusers import StableDiffusionPipeline
from helpers import ROOT, assert_small_safetensors_model

import difforge
import difforge_zoo

sys.path.insert(0, str(ROOT / "packages" / "zoo" / "training"))
import label_samples  # noqa: E402
import train_shapes_sd  # noqa: E402

MODEL = difforge_zoo.load("shapes-sd-tiny")
CARD = json.loads((MODEL / "metrics.json").read_text())


def test_diffusers_loads_and_samples_offline():
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, local_files_only=True)
    image = pipe("a red circle", num_inference_steps=5, output_type="pt",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 3, 32, 32)
    assert difforge_zoo.load(as_pipeline=True).unet.config.sample_size == 16


def test_difforge_resolves_the_zoo_name():
    backbone = difforge.load_backbone("shapes-sd-tiny")
    assert backbone.conditioning == "text" and backbone.vae is not None


def test_weights_are_small_and_safetensors_only():
    assert_small_safetensors_model(MODEL)


@pytest.fixture(scope="module")
def measured():
    """The card's spot check (its prompt sets and seed at fewer samples per prompt), re-measured."""
    return train_shapes_sd.evaluate(MODEL, CARD["spot_check"]["per_prompt"],
                                    guidance=CARD["guidance_scale"], steps=CARD["steps"], seed=CARD["seed"])


@pytest.mark.parametrize("prompts",
                         ["single_heldout_combination", "single_seen_combination", "two_shapes_with_positions"])
def test_model_card_numbers_are_reproduced(measured, prompts):
    for key, value in CARD["spot_check"][prompts].items():
        assert measured[prompts][key] == pytest.approx(value, abs=0.03), (prompts, key)


def test_spot_check_agrees_with_the_full_evaluation():
    """The spot check samples the same prompts with the same seed: its accuracies stay near the card's."""
    for prompts in ("single_heldout_combination", "single_seen_combination", "two_shapes_with_positions"):
        spot, full = CARD["spot_check"][prompts], CARD[prompts]
        assert spot["n"] < full["n"], prompts
        assert spot["colour_accuracy"] == pytest.approx(full["colour_accuracy"], abs=0.1), prompts
        assert spot["full_accuracy"] == pytest.approx(full["full_accuracy"], abs=0.15), prompts


@pytest.mark.parametrize("prompts", ["single_heldout_combination", "single_seen_combination"])
def test_quality_bar_on_single_shape_prompts(measured, prompts):
    """The model-zoo issue's bar: colour >= 90 % and shape >= 80 %, on held-out combinations too
    (measured on the spot check's samples)."""
    assert measured[prompts]["colour_accuracy"] >= 0.90, measured[prompts]
    assert measured[prompts]["shape_accuracy"] >= 0.80, measured[prompts]


def test_scorer_accuracy_on_the_labelled_generated_samples():
    """The stored set of 216 generated samples (base model and two tuned variants), labelled
    without the scorer: every disagreement was checked by hand; the scorer re-reads every image
    as stored, its accuracy is the card's, and the independent labeller reproduces its labels."""
    import numpy as np
    from PIL import Image

    labels = label_samples
    rows = [json.loads(line) for line in (labels.OUT / "labels.jsonl").read_text().splitlines()]
    summary = json.loads((labels.OUT / "summary.json").read_text())
    assert len(rows) == summary["samples"] >= 200 and len(summary["models"]) == 3
    assert summary["hand_checks_missing"] == 0
    hand = json.loads((labels.OUT / "hand_labels.json").read_text())
    assert {r["file"] for r in rows if r["needs_hand_check"]} <= set(hand)
    right = 0
    for row in rows:
        image = np.asarray(Image.open(labels.OUT / row["file"]).convert("RGB"))
        assert labels.scorer_reading(image) == row["scorer"], row["file"]
        right += row["scorer"] == row["label"]
    assert right / len(rows) == summary["scorer_accuracy"] >= 0.9
    for row in rows[::9]:  # the render matcher, a spot of 24
        image = np.asarray(Image.open(labels.OUT / row["file"]).convert("RGB"))
        assert labels.render_match(image)["label"] == row["render_match"]["label"], row["file"]
    card = (labels.MODEL_DIR / "README.md").read_text()
    assert f"The scorer reads {summary['scorer_accuracy']:.3f} of them right" in card


def test_the_recipe_holds_on_a_second_unet_seed():
    """Both recorded UNet seeds meet the model-zoo bar on held-out combinations (shape accuracy
    >= 0.80 at the card's guidance), and the card quotes them."""
    seeds = json.loads(train_shapes_sd.UNET_SEEDS_FILE.read_text())["seeds"]
    assert len(seeds) >= 2
    for seed, s in seeds.items():
        assert s["heldout_shape_accuracy_by_guidance"][str(CARD["guidance_scale"])] >= 0.80, seed
    assert train_shapes_sd.unet_seeds_line().strip() in (MODEL / "README.md").read_text()
    readme = (ROOT / "packages" / "zoo" / "README.md").read_text().replace("\n  ", " ")
    at = {seed: s["heldout_shape_accuracy_by_guidance"][str(CARD["guidance_scale"])] for seed, s in seeds.items()}
    assert f"shape accuracy {at['1']:.3f} at guidance 4 against the committed model's {at['0']:.3f}" in readme
