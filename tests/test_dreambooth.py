"""DreamBooth mechanics on the tiny random pipeline: class images are generated once by the
base model and reused; the prior-preservation term enters the loss. Its measured effect on
the shapes world is tested in test_zoo_quickstart.py."""

import pytest
import torch

import difforge
from difforge.errors import ConfigError
from difforge.training import Trainer


@pytest.fixture
def dreambooth_config(lora_config, tmp_path):
    lora_config["objective"] = {"name": "dreambooth", "options": {
        "class_prompt": "a red circle", "num_class_images": 6, "class_sampling_steps": 2,
        "class_data_dir": str(tmp_path / "class_images")}}
    lora_config["data"]["options"]["caption"] = "a red sks circle"
    lora_config["train"]["steps"] = 3
    return lora_config


def test_class_images_generated_once_by_the_base_model(dreambooth_config, tmp_path):
    trainer = Trainer(difforge.load_config(data=dreambooth_config))
    files = sorted((tmp_path / "class_images").glob("*.png"))
    assert len(files) == 6 and trainer.objective.class_pixels.shape == (6, 3, 32, 32)
    stamps = [f.stat().st_mtime_ns for f in files]
    again = Trainer(difforge.load_config(data=dreambooth_config))
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "class_images").glob("*.png"))] == stamps
    assert torch.equal(again.objective.class_pixels, trainer.objective.class_pixels)


def test_prior_loss_is_part_of_the_objective(dreambooth_config):
    trainer = Trainer(difforge.load_config(data=dreambooth_config))
    batch = next(trainer._batches())
    objective = trainer.objective
    loss, logs = objective.loss(batch, trainer.model, torch.Generator().manual_seed(0))
    expected = logs["instance_loss"] + objective.db.prior_loss_weight * logs["prior_loss"]
    torch.testing.assert_close(loss.detach(), expected)
    assert logs["prior_loss"] > 0
    objective.db.prior_loss_weight = 0.0
    loss0, logs0 = objective.loss(batch, trainer.model, torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss0.detach(), logs0["instance_loss"])


def test_dreambooth_trains_and_saves_a_lora(dreambooth_config):
    result = difforge.train(dreambooth_config)
    assert result.steps == 3 and (result.adapter_path / "pytorch_lora_weights.safetensors").exists()


def test_dreambooth_needs_a_class_prompt(dreambooth_config):
    del dreambooth_config["objective"]["options"]["class_prompt"]
    with pytest.raises(ConfigError, match="objective.options.class_prompt: Field required"):
        difforge.load_config(data=dreambooth_config)
