"""Tiny Stable-Diffusion-shaped components with random weights, built from code."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

TOKENIZER_MAX_LENGTH = 16

#: words the tiny tokenizer encodes as single tokens; anything else falls back to characters
DEFAULT_WORDS = (
    "a an the of and on in at with photo picture sks "
    "red green blue yellow purple orange white black cyan magenta "
    "circle square triangle star heart blob shape shapes "
    "left right top bottom centre center small large big"
).split()


def build_clip_tokenizer(path: str | Path, words: Iterable[str] = DEFAULT_WORDS,
                         max_length: int = TOKENIZER_MAX_LENGTH):
    """A tiny CLIP BPE tokenizer spelling ``words`` as single tokens (see difforge.tokenizers)."""
    from difforge.tokenizers import build_clip_tokenizer as build

    return build(path, words, max_length)


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
    tokenizer = build_clip_tokenizer(path / "tokenizer")
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
