"""The ``autoencoder`` objective trains a latent model's VAE and nothing else."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel
from torch.utils.data import Dataset

from difforge import Backbone
from difforge.config import validate_config
from difforge.errors import ConfigError
from difforge.training.trainer import Trainer


class Blobs(Dataset):
    """16x16 images of one soft square at a seeded place (item ``i`` depends only on ``(seed, i)``)."""

    def __init__(self, count: int, seed: int) -> None:
        self.count, self.seed = count, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        g = torch.Generator().manual_seed(self.seed * 100_003 + index)
        x, y = torch.randint(0, 10, (2,), generator=g).tolist()
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1
        image = -torch.ones(3, 16, 16)
        image[:, y : y + 6, x : x + 6] = colour
        return {"sample": image}


def tiny_latent_backbone(with_vae: bool = True) -> Backbone:
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1,
                        latent_channels=4, norm_num_groups=8, sample_size=16)
    unet = UNet2DModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)
    return Backbone(unet, DDPMScheduler(), vae=vae if with_vae else None)


def config(tmp_path, **sections):
    base = {"model": {"build": "unet2d"}, "objective": {"name": "autoencoder"},
            "data": {"dataset": None, "batch_size": 8},  # the Blobs dataset is given in code
            "train": {"steps": 60, "lr": 3e-3, "seed": 0, "max_grad_norm": None},
            "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return validate_config(base)


@torch.no_grad()
def reconstruction_error(vae, images: torch.Tensor) -> float:
    return float((vae.decode(vae.encode(images).latent_dist.mean).sample - images).pow(2).mean())


def test_trains_the_vae_alone_and_reconstructs_held_out_images_better(tmp_path):
    backbone = tiny_latent_backbone()
    held_out = torch.stack([Blobs(16, seed=99)[i]["sample"] for i in range(16)])
    before = reconstruction_error(backbone.vae, held_out)
    unet_before = {k: v.clone() for k, v in backbone.denoiser.state_dict().items()}
    result = Trainer(config(tmp_path), backbone=backbone, dataset=Blobs(64, seed=0)).fit()
    after = reconstruction_error(backbone.vae.eval(), held_out)
    assert after < 0.5 * before, (before, after)
    for name, value in backbone.denoiser.state_dict().items():
        assert torch.equal(value, unet_before[name]), name
    assert (result.model_path / "vae" / "config.json").exists()


def test_refuses_a_model_without_vae_and_an_adapter(tmp_path):
    with pytest.raises(ConfigError, match="objective.name: 'autoencoder' trains the model's VAE"):
        Trainer(config(tmp_path), backbone=tiny_latent_backbone(with_vae=False), dataset=Blobs(8, seed=0))
    with pytest.raises(ConfigError, match="adapter: the 'autoencoder' objective trains the whole VAE"):
        Trainer(config(tmp_path, adapter={"type": "lora"}), backbone=tiny_latent_backbone(), dataset=Blobs(8, seed=0))
