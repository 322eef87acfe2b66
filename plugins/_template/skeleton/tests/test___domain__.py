"""The __domain__ plugin: it loads and honours the protocols, its reward reads the ground truth
back exactly, and its recipe trains."""

from pathlib import Path

import pytest
import torch
import yaml

import difforge
from difforge_testkit import check_plugin

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_plugin_loads_and_honours_the_protocols():
    registered = check_plugin("difforge-__domain__")
    assert registered == {"datasets": ["__domain__-waves"], "rewards": ["__domain__-frequency"]}


def test_reward_reads_the_ground_truth_back():
    from difforge___domain__.world import WavesDataset

    data = WavesDataset(count=32, seed=3)
    samples = torch.stack([data[i]["sample"] for i in range(32)])
    captions = [data[i]["caption"] for i in range(32)]
    reward = difforge.get_registry("rewards").get("__domain__-frequency")
    assert reward(samples, captions).tolist() == [1.0] * 32
    assert reward(samples.roll(1, 0), captions).mean() < 0.6  # the wrong waves for these captions
    with pytest.raises(ValueError, match="expected waves"):
        reward(torch.zeros(2, 3, 8, 8), captions[:2])


def test_recipe_trains(tmp_path):
    config = yaml.safe_load((RECIPES / "waves.yaml").read_text())
    config["train"]["steps"] = 20
    config["output"] = {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False}
    result = difforge.train(config)
    assert result.steps == 20 and result.losses[-1] < result.losses[0]
    model = difforge.load(result.model_path)
    assert model.sample(num_samples=2, num_steps=5).shape == (2, 1, 64)
