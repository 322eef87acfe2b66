"""The ``controlnet`` objective: a ControlNet trained through ``difforge.train`` on the frozen
shapes-sd-tiny, with each image's foreground mask as its control, makes held-out images easier
to denoise given their own mask than given the mirrored one."""

import pytest
import torch
from helpers import plugin_module

import difforge
from difforge.plugin_api import ConfigError, register_plugin
from difforge.training.control import foreground_mask


class MaskedShapes(torch.utils.data.Dataset):
    """Single shapes with their foreground mask as ``controlnet_cond``."""

    provides = frozenset({"images", "captions", "controlnet_cond"})

    def __init__(self, count: int = 256, seed: int = 0) -> None:
        from difforge_zoo.data import ShapesDataset

        self.shapes = ShapesDataset(count=count, seed=seed, split="train", num_objects=1)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> dict:
        item = self.shapes[index]
        return {**item, "controlnet_cond": foreground_mask(item["pixel_values"][None])[0]}


@pytest.fixture
def masked_shapes(fresh_plugins):
    register_plugin(plugin_module("masked_shapes", difforge_register_datasets=lambda: {"masked-shapes": MaskedShapes}),
                    "masked-shapes")


def _config(tmp_path, **objective_options) -> dict:
    return {"model": {"pretrained": "shapes-sd-tiny"},
            "data": {"dataset": "masked-shapes", "options": {"count": 256}, "batch_size": 8},
            "objective": {"name": "controlnet", "options": {"conditioning_channels": 1,
                                                             "conditioning_embedding_out_channels": [16, 32],
                                                             **objective_options}},
            "train": {"steps": 150, "lr": 3e-3, "seed": 0},
            "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False}}


def test_controlnet_objective_trains_a_controlnet_that_uses_its_control(masked_shapes, tmp_path):
    from diffusers import ControlNetModel

    from difforge.plugin_api import ControlNetDenoiser

    result = difforge.train(_config(tmp_path))
    assert result.model_path == tmp_path / "run" / "controlnet"
    controlnet = ControlNetModel.from_pretrained(result.model_path)
    model = difforge.load_backbone("shapes-sd-tiny")
    model.replace_denoiser(ControlNetDenoiser(model.denoiser, controlnet))
    held_out = MaskedShapes(count=32, seed=9)
    batch = [held_out[i] for i in range(32)]
    pixels = torch.stack([b["pixel_values"] for b in batch])
    masks = torch.stack([b["controlnet_cond"] for b in batch])

    def loss(control: torch.Tensor) -> float:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            latents = model.encode_images(pixels, generator=g)
            cond = model.encode_prompts([b["caption"] for b in batch])
            t = torch.randint(600, 950, (len(pixels),), generator=g)  # noisy: the shape's place is open
            noise = torch.randn(latents.shape, generator=g)
            noisy = model.scheduler.add_noise(latents, noise, t)
            out = model.predict(noisy, t, cond, extra={"controlnet_cond": control})
            return torch.mean((out - noise) ** 2).item()

    own, mirrored = loss(masks), loss(masks.flip(-1))
    print(f"controlnet: held-out loss {mirrored:.4f} with the mirrored mask -> {own:.4f} with the own mask")
    assert own < 0.9 * mirrored  # measured: 0.0095 -> 0.0072


def test_controlnet_objective_needs_controls_in_the_data(fresh_plugins, tmp_path):
    config = _config(tmp_path)
    config["data"] = {"dataset": "shapes", "options": {"count": 16}, "batch_size": 8}
    with pytest.raises(ConfigError, match="objective 'controlnet' needs 'controlnet_cond'"):
        difforge.train(config)
