"""Every adapter type trains through ``difforge train`` from its example config and learns:
on shapes-sd-tiny, the denoising loss on a held-out concept (a red heart, never in
pretraining), at fixed noise and timesteps, falls clearly below the base model's."""

from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT

import difforge
from difforge.plugins import get_registry

CONFIGS = ROOT / "examples" / "configs" / "adapters"


@pytest.fixture(scope="module")
def heart_images(tmp_path_factory) -> Path:
    from PIL import Image

    from difforge_zoo.shapes import random_scene

    folder = tmp_path_factory.mktemp("hearts")
    for i in range(5):
        scene = random_scene(10_000 + i, split="concepts", num_objects=1, shapes=["heart"], colours=["red"])
        Image.fromarray(scene.image).save(folder / f"heart_{i}.png")
    return folder


def concept_loss(backbone, folder: Path, caption: str) -> float:
    """Mean epsilon-MSE over the images of ``folder`` at 8 fixed (timestep, noise) draws."""
    import numpy as np
    from PIL import Image

    pixels = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                          for p in sorted(folder.glob("*.png"))]).float() / 127.5 - 1
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        latents = backbone.encode_images(pixels, generator=g)
        cond = backbone.encode_prompts([caption] * len(pixels))
        losses = []
        for _ in range(8):
            t = torch.randint(50, 950, (len(pixels),), generator=g)
            noise = torch.randn(latents.shape, generator=g)
            noisy = backbone.scheduler.add_noise(latents, noise, t)
            losses.append(torch.mean((backbone.predict(noisy, t, cond) - noise) ** 2).item())
    return sum(losses) / len(losses)


def test_every_type_has_an_example_config():
    assert set(get_registry("adapters").owned_by("difforge")) <= {p.stem for p in CONFIGS.glob("*.yaml")}


#: types whose effect needs a prompt other than text are tested on their own below
PROMPTED = {"ip-adapter"}


@pytest.mark.parametrize("kind", sorted(set(get_registry("adapters").owned_by("difforge")) - PROMPTED))
def test_adapter_learns_a_new_concept(kind, heart_images, tmp_path):
    config = yaml.safe_load((CONFIGS / f"{kind}.yaml").read_text())
    config["data"]["options"]["path"] = str(heart_images)
    config["objective"] = {"name": "denoising"}  # the loss itself; DreamBooth's prior is the benchmark's job
    config["train"].update(steps=40, warmup_steps=0)
    config["output"] = {"dir": str(tmp_path / "run"), "progress": False, "tensorboard": False}
    result = difforge.train(config)
    caption = config["data"]["options"]["caption"]
    before = concept_loss(difforge.load("shapes-sd-tiny"), heart_images, caption)
    after = concept_loss(difforge.load("shapes-sd-tiny", adapters=[(result.adapter_path, 1.0)]), heart_images, caption)
    print(f"{kind}: concept loss {before:.4f} -> {after:.4f}")
    assert after < 0.85 * before, f"{kind}: concept loss {before:.4f} -> {after:.4f}"


def test_ip_adapter_learns_to_read_the_image_prompt(tmp_path):
    """Trained from its example config (shortened), the IP-Adapter lowers the denoising loss of
    single shapes when the image itself is the prompt and the caption is empty (at timesteps
    50-500: with 16x16 latents, noisier steps are predicted from x_t alone, whatever the prompt)."""
    from difforge_zoo.data import ShapesDataset
    from difforge_zoo.ip_adapter import ImageEncoder, default_image_encoder

    config = yaml.safe_load((CONFIGS / "ip-adapter.yaml").read_text())
    config["train"].update(steps=150, warmup_steps=0)
    config["output"] = {"dir": str(tmp_path / "run"), "progress": False, "tensorboard": False}
    result = difforge.train(config)
    data = ShapesDataset(count=16, seed=7, split="any", num_objects=1)
    pixels = torch.stack([data[i]["pixel_values"] for i in range(16)])
    embeds = ImageEncoder(default_image_encoder("shapes-sd-tiny"))(pixels)
    model = difforge.load("shapes-sd-tiny", adapters=[(result.adapter_path, 1.0)])

    def loss(with_image: bool) -> float:
        extra = {"ip_adapter_image_embeds": embeds} if with_image else {}
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            latents = model.encode_images(pixels, generator=g)
            cond = model.encode_prompts([""] * len(pixels))
            t = torch.randint(50, 500, (len(pixels),), generator=g)
            noise = torch.randn(latents.shape, generator=g)
            noisy = model.scheduler.add_noise(latents, noise, t)
            return torch.mean((model.predict(noisy, t, cond, extra=extra) - noise) ** 2).item()

    without, with_image = loss(False), loss(True)
    print(f"ip-adapter: empty-caption loss {without:.4f} -> {with_image:.4f} with the image prompt")
    assert with_image < 0.85 * without


def test_controllable_sc_tuner_follows_a_mask(tmp_path):
    """SCEdit's CSC-Tuner trained with foreground masks: samples of a prompt that names no
    position overlap a mask placed left or right far more than uncontrolled samples do."""
    from difforge.training.control import foreground_mask
    from difforge_zoo.shapes import draw_scene

    config = yaml.safe_load((CONFIGS / "sc-tuner-control.yaml").read_text())
    config["train"]["steps"] = 250
    config["output"] = {"dir": str(tmp_path / "run"), "progress": False, "tensorboard": False}
    result = difforge.train(config)
    model = difforge.load("shapes-sd-tiny", adapters=[(result.adapter_path, 1.0)])
    scenes = [draw_scene([("square", "red", side, "large")], seed=i) for i in range(4) for side in ("left", "right")]
    masks = foreground_mask(torch.stack([torch.from_numpy(s.image.copy()).permute(2, 0, 1).float() / 127.5 - 1
                                         for s in scenes]))
    prompts = ["a red circle"] * len(scenes)

    def overlap(with_condition: bool) -> float:
        extra = {"condition_map": masks} if with_condition else {}
        images = model.sample(prompts, num_steps=20, guidance_scale=4.0, generator=torch.Generator().manual_seed(0),
                              extra=extra)
        drawn = foreground_mask(images.float())
        union = (drawn + masks - drawn * masks).sum((1, 2, 3)).clamp_min(1)
        return float(((drawn * masks).sum((1, 2, 3)) / union).mean())

    controlled, free = overlap(True), overlap(False)
    print(f"sc-tuner control: mask IoU {free:.3f} uncontrolled -> {controlled:.3f} controlled")
    assert controlled > free + 0.15
