"""Tiny Stable-Diffusion-shaped components with random weights, built from code."""

from __future__ import annotations

from pathlib import Path

import torch

from .tokenizers import build_clip_tokenizer

TOKENIZER_MAX_LENGTH = 16

#: words the tiny tokenizer encodes as single tokens; anything else falls back to characters
DEFAULT_WORDS = (
    "a an the of and on in at with photo picture sks "
    "red green blue yellow purple orange white black cyan magenta "
    "circle square triangle star heart blob shape shapes "
    "left right top bottom centre center small large big"
).split()


def tiny_text_encoder(vocab_size: int, hidden: int = 32, max_length: int = TOKENIZER_MAX_LENGTH, seed: int = 0):
    """A 2-layer ``CLIPTextModel``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_length,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def tiny_unet(sample_size: int = 8, in_channels: int = 4, cross_attention_dim: int = 32, seed: int = 0):
    """A ``UNet2DConditionModel`` with blocks (32, 64): about 0.8 M parameters."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_vae(seed: int = 0):
    """An ``AutoencoderKL`` with 4 latent channels and a down-sampling factor of 4."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )


def build_tiny_sd(path: str | Path, seed: int = 0, resolution: int = 32, prediction_type: str = "epsilon") -> Path:
    """Save a tiny ``StableDiffusionPipeline`` (random weights) in diffusers layout at ``path``.

    Loadable offline with ``StableDiffusionPipeline.from_pretrained(path)`` and
    ``difforge.load_backbone(path)``.
    """
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    path = Path(path)
    tokenizer = build_clip_tokenizer(path / "tokenizer", DEFAULT_WORDS, TOKENIZER_MAX_LENGTH)
    vae = tiny_vae(seed)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=tiny_text_encoder(len(tokenizer), seed=seed),
        tokenizer=tokenizer,
        unet=tiny_unet(sample_size=resolution // factor, seed=seed),
        scheduler=DDPMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            clip_sample=False, prediction_type=prediction_type, steps_offset=1,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def tiny_unet3d(sample_size: int = 8, in_channels: int = 3, cross_attention_dim: int = 32, seed: int = 0):
    """A text-conditioned ``UNet3DConditionModel`` over (C, frames, H, W) clips: about 0.34 M parameters."""
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    return UNet3DConditionModel(**tiny_unet3d_config(sample_size, in_channels, cross_attention_dim))


def tiny_unet3d_config(sample_size: int = 8, in_channels: int = 3, cross_attention_dim: int = 32) -> dict:
    """The config of :func:`tiny_unet3d` (for ``model.build: unet3d-condition``)."""
    return {"sample_size": sample_size, "in_channels": in_channels, "out_channels": in_channels,
            "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
            "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"], "block_out_channels": [16, 32],
            "layers_per_block": 1, "norm_num_groups": 8, "cross_attention_dim": cross_attention_dim,
            "attention_head_dim": 4}


def _policy_unet_class():
    from diffusers import ConfigMixin, ModelMixin
    from diffusers.configuration_utils import register_to_config
    from diffusers.models.embeddings import get_timestep_embedding
    from torch import nn

    class TinyPolicyUNet1D(ModelMixin, ConfigMixin):
        """A 1-D convolutional denoiser of action chunks ``(B, action_dim, horizon)`` conditioned on
        an observation vector through FiLM, called ``forward(sample, timestep, global_cond)``: the
        shape of Diffusion Policy's ``ConditionalUnet1D`` (Chi et al. 2023) in miniature."""

        @register_to_config
        def __init__(self, in_channels: int = 2, sample_size: int = 16, global_cond_dim: int = 2, hidden: int = 32,
                     num_blocks: int = 2) -> None:
            super().__init__()
            self.inp = nn.Conv1d(in_channels, hidden, 3, padding=1)
            self.film = nn.Sequential(nn.Linear(hidden + global_cond_dim, 2 * hidden), nn.Mish(),
                                      nn.Linear(2 * hidden, 2 * hidden * num_blocks))
            self.blocks = nn.ModuleList(
                nn.Sequential(nn.Conv1d(hidden, hidden, 5, padding=2), nn.GroupNorm(8, hidden), nn.Mish())
                for _ in range(num_blocks))
            self.out = nn.Conv1d(hidden, in_channels, 1)

        def forward(self, sample, timestep, global_cond=None):
            """The denoiser output for ``sample`` at ``timestep`` given observations ``global_cond``."""
            timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
            embedding = get_timestep_embedding(timestep, self.config.hidden).to(sample.dtype)
            if global_cond is None:
                global_cond = sample.new_zeros(sample.shape[0], self.config.global_cond_dim)
            film = self.film(torch.cat([embedding, global_cond.to(sample.dtype)], dim=1)).chunk(
                2 * len(self.blocks), dim=1)
            h = self.inp(sample)
            for i, block in enumerate(self.blocks):
                h = h + block(h) * (1 + film[2 * i][..., None]) + film[2 * i + 1][..., None]
            return self.out(h)

    return TinyPolicyUNet1D


def __getattr__(name: str):
    # the policy UNet subclasses diffusers' ModelMixin: built on first use so importing the testkit stays light
    if name == "TinyPolicyUNet1D":
        cls = _policy_unet_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
