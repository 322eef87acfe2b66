"""Domains that are not images go through the same seams: a denoiser spec registered by a
plugin, the neutral ``sample`` batch key, vector conditioning and rank-agnostic rewards.

- a 1-D policy UNet conditioned on observations (``global_cond``, Diffusion Policy's shape)
  trains through ``difforge.train``, round-trips through save/load and samples chunks that head
  for held-out goals;
- a 3-D video UNet over (N, C, T, H, W) clips trains through ``difforge.train``.
"""

import pytest
import torch
from helpers import plugin_module

import difforge
from difforge.plugin_api import DenoiserSpec, Reward, backbone_builder, register_plugin, sequence_shape
from difforge_testkit.components import tiny_unet3d_config
from difforge_testkit.toydata import ToyClips, ToyTrajectories

POLICY_SPEC = DenoiserSpec(condition_kwarg="global_cond", conditioning="vector", sample_shape=sequence_shape,
                           model_class="difforge_testkit.components:TinyPolicyUNet1D")


@pytest.fixture
def toy_domains(fresh_plugins):
    """An in-process plugin registering what a domain plugin would: a denoiser spec, a builder, datasets."""
    from difforge_testkit.components import TinyPolicyUNet1D

    register_plugin(plugin_module(
        "toy_domains",
        difforge_register_denoisers=lambda: {"TinyPolicyUNet1D": POLICY_SPEC},
        difforge_register_backbones=lambda: {"policy-unet1d": backbone_builder(TinyPolicyUNet1D)},
        difforge_register_datasets=lambda: {"toy-trajectories": ToyTrajectories, "toy-clips": ToyClips},
    ), "toy-domains")


def _heading(backbone, goals: torch.Tensor) -> float:
    """Mean cosine between each sampled chunk's last point and its goal."""
    chunks = backbone.sample(condition=goals, num_steps=20, generator=torch.Generator().manual_seed(3))
    assert chunks.shape == (len(goals), 2, 16)
    return torch.nn.functional.cosine_similarity(chunks[:, :, -1], goals, dim=1).mean().item()


def test_policy_unet_with_observation_conditioning_trains_and_follows_held_out_goals(toy_domains, tmp_path):
    config = {
        "model": {"build": "policy-unet1d", "options": {
            "denoiser": {"in_channels": 2, "sample_size": 16, "global_cond_dim": 2},
            "scheduler": "ddim", "scheduler_config": {"num_train_timesteps": 100, "clip_sample": False}}},
        "data": {"dataset": "toy-trajectories", "options": {"count": 256, "seed": 0}, "batch_size": 32},
        "train": {"steps": 300, "lr": 3e-3, "seed": 0},
        "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False},
    }
    result = difforge.train(config)
    assert result.losses[-1] < 0.5 * result.losses[0]
    trained = difforge.load(result.model_path)  # the plugin's class comes back through its spec's model_class
    assert type(trained.denoiser).__name__ == "TinyPolicyUNet1D" and trained.conditioning == "vector"
    assert trained.sample_shape() == (2, 16)
    held_out = ToyTrajectories(count=32, seed=1).goals
    base = difforge.load(result.model_path)
    with torch.no_grad():
        for p in base.denoiser.parameters():
            p.mul_(0)  # a denoiser that predicts no noise: chunks stay where the noise put them
    follows, ignores = _heading(trained, held_out), _heading(base, held_out)
    print(f"policy: cosine to held-out goals {ignores:.3f} (zeroed) -> {follows:.3f} (trained)")
    assert follows > 0.9 and ignores < 0.5
    with pytest.raises(ValueError, match="needs an unconditional input"):
        trained.sample(condition=held_out[:2], num_steps=2, guidance_scale=3.0)


def test_video_unet_over_five_dimensional_clips_trains(toy_domains, tiny_sd_dir, tmp_path):
    config = {
        "model": {"build": "unet3d-condition", "options": {
            "denoiser": tiny_unet3d_config(), "text_encoder": str(tiny_sd_dir),
            "scheduler": "ddpm", "scheduler_config": {"num_train_timesteps": 100}}},
        "data": {"dataset": "toy-clips", "options": {"count": 16}, "batch_size": 4},
        "train": {"steps": 40, "lr": 2e-3, "seed": 0},
        "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False},
    }
    result = difforge.train(config)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    print(f"video: loss {first:.3f} -> {last:.3f}")
    assert last < 0.7 * first
    model = difforge.load(result.model_path)
    assert model.sample_shape() is None  # a video config does not fix the frame count
    with pytest.raises(ValueError, match="give sample\\(shape=...\\)"):
        model.sample(["a square moving left"], num_steps=2)
    clips = model.sample(["a square moving left", "a square moving right"], num_steps=2, shape=(3, 4, 8, 8),
                         guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert clips.shape == (2, 3, 4, 8, 8)


class ClipBrightness(Reward):
    """Mean value of each clip (a reward on (N, C, T, H, W) samples)."""

    name = "clip-brightness"

    def score(self, images, prompts=None):
        return images.flatten(1).mean(1)


def test_a_reward_is_rank_agnostic_and_an_image_reward_checks_images():
    clips = torch.zeros(2, 3, 4, 8, 8)
    assert ClipBrightness()(clips).shape == (2,)
    with pytest.raises(ValueError, match="expected a batch of samples"):
        ClipBrightness()(torch.zeros(5))
    colourfulness = difforge.plugin_api.get_registry("rewards").get("colourfulness")
    with pytest.raises(ValueError, match="expected images \\(N, C, H, W\\), got \\(2, 3, 4, 8, 8\\)"):
        colourfulness(clips)


def test_an_unregistered_denoiser_class_is_one_clear_line(fresh_plugins):
    from diffusers import DDPMScheduler

    class Mystery(torch.nn.Module):
        config = {}

    with pytest.raises(difforge.plugin_api.ConfigError, match="no denoiser spec is registered for Mystery"):
        difforge.Backbone(Mystery(), DDPMScheduler())
