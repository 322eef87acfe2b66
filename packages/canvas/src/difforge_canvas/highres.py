"""Higher resolution than the model was trained at, without training.

- **Entropy-scaled attention** (Jin et al. 2023, "Training-free Diffusion Model Adaptation for
  Variable-Sized Text-to-Image Synthesis"): at ``N`` tokens a self-attention layer trained on
  ``n`` spreads its attention over more positions (its entropy grows with ``log N``); scaling
  its logits by ``sqrt(log N / log n)`` keeps the entropy of training. Applied by scaling the
  query projection of every self-attention layer (``attn1``) for the duration of a ``with``.
- **DiffuseHigh** (Kim et al. 2024, "DiffuseHigh: Training-free Progressive High-Resolution
  Image Synthesis through Structure Guidance"): sample at the native size, upsample the image
  ×2, encode it and noise it to an intermediate level, then denoise at the higher size while
  *structure guidance* replaces the low-frequency (DWT LL) band of every clean-sample estimate
  by that of the upsampled reference, until a lower level; repeat per ×2 stage. The wavelet is
  the one-level Haar transform, whose LL replacement has the closed form
  ``x0 + up(pool(ref) - pool(x0))`` (2×2 mean pooling, nearest upsampling).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difforge.plugin_api import UsageError, get_registry, schedule_from_scheduler

from .canvas import decode, encode_conditions, native_window, schedule_part, step_at_level


@contextmanager
def entropy_scaled_attention(denoiser: nn.Module, area_ratio: float) -> Iterator[int]:
    """Within the block, every self-attention layer (a module named ``attn1`` with a ``to_q``) of
    ``denoiser`` run on ``N`` tokens scales its logits by ``sqrt(log N / log(N / area_ratio))``,
    ``area_ratio`` being the sample's area over the trained one; yields the number of layers."""

    def scale_query(module: nn.Module, inputs, output: Tensor) -> Tensor:
        tokens = output.shape[1]
        trained = tokens / area_ratio
        return output * math.sqrt(math.log(tokens) / math.log(trained)) if trained > 1 else output

    hooks = [module.to_q.register_forward_hook(scale_query) for name, module in denoiser.named_modules()
             if name.split(".")[-1] == "attn1" and hasattr(module, "to_q")]
    try:
        yield len(hooks)
    finally:
        for hook in hooks:
            hook.remove()


def haar_low_pass(x: Tensor) -> Tensor:
    """The one-level Haar approximation of ``x`` ``(..., H, W)`` back at full size: each 2×2 block
    replaced by its mean (the inverse DWT of the LL band alone)."""
    return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")


def structure_guidance(x0: Tensor, reference: Tensor) -> Tensor:
    """DiffuseHigh's structure guidance: ``x0`` with its Haar LL band replaced by ``reference``'s."""
    return x0 - haar_low_pass(x0) + haar_low_pass(reference)


@dataclass
class HighResolution:
    """Images ``(N, 3, H, W)`` in [-1, 1] at the higher size, the native-size ``base`` images they
    grew from, and ``nfe``: denoiser evaluations per image, every stage counted once."""

    images: Tensor
    base: Tensor
    nfe: int


@torch.no_grad()
def sample_high_resolution(backbone, prompts: list[str] | None = None, *, scale: int = 2, num_samples: int = 1,
                           structure: bool = True, attention_scaling: bool = True, noise_level: float = 0.6,
                           guidance_until: float = 0.3, num_steps: int = 25, sampler: str = "ddim",
                           guidance_scale: float = 1.0, generator: torch.Generator | None = None) -> HighResolution:
    """Images ``scale`` times the native size (a power of 2): DiffuseHigh (``structure``): native
    sample, then per ×2 stage the upsampled image noised to ``noise_level`` and denoised with
    structure guidance down to ``guidance_until`` (fractions of the training timesteps);
    ``structure=False``: naive sampling at the target size from pure noise. ``attention_scaling``
    adds entropy-scaled attention at every size above the native one."""
    if scale < 2 or scale & (scale - 1):
        raise UsageError(f"highres: scale must be a power of 2 of at least 2, got {scale}")
    if not 0 <= guidance_until <= noise_level <= 1:
        raise UsageError(f"highres: needs 0 <= guidance_until <= noise_level <= 1, got guidance_until="
                         f"{guidance_until}, noise_level={noise_level}")
    channels, height, width = native_window(backbone, "highres")
    conditions = encode_conditions(backbone, "highres", prompts)
    batch = len(conditions) if conditions is not None else num_samples
    denoise = backbone.guided_denoise(conditions, guidance_scale, batch)
    solve = get_registry("samplers").get(sampler)
    schedule = schedule_from_scheduler(backbone.scheduler, num_steps)
    dtype = next(backbone.denoiser.parameters()).dtype

    def scaled(factor: int):
        return entropy_scaled_attention(backbone.denoiser, factor**2) if attention_scaling else nullcontext(0)

    if not structure:
        noise = torch.randn((batch, channels, height * scale, width * scale), generator=generator).to(backbone.device,
                                                                                                       dtype)
        with scaled(scale):
            latents = solve(denoise, noise, schedule, generator=generator)
        images = decode(backbone, latents)
        return HighResolution(images=images, base=images, nfe=num_steps)

    if schedule.alphas is None:
        raise UsageError("highres: DiffuseHigh needs a variance-preserving (DDPM-family) scheduler")
    noise = torch.randn((batch, channels, height, width), generator=generator).to(backbone.device, dtype)
    base = decode(backbone, solve(denoise, noise, schedule, generator=generator))
    trained = backbone.scheduler.config.num_train_timesteps
    start = step_at_level(schedule, noise_level, trained)
    release = schedule.timesteps[step_at_level(schedule, guidance_until, trained):]
    images, factor, nfe = base, 1, num_steps
    while factor < scale:
        factor *= 2
        upsampled = F.interpolate(images.float(), scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
        reference = backbone.encode_images(upsampled.to(backbone.device), generator=generator).to(dtype)
        alpha = schedule.alphas[start].to(reference)
        x = alpha.sqrt() * reference + (1 - alpha).sqrt() * torch.randn(reference.shape, generator=generator).to(
            reference)

        def guided(x_t: Tensor, t: Tensor, reference: Tensor = reference) -> Tensor:
            x0 = denoise(x_t, t)
            return x0 if bool((release == t[0].cpu()).any()) else structure_guidance(x0, reference)

        with scaled(factor):
            latents = solve(guided, x, schedule_part(schedule, start), generator=generator)
        images = decode(backbone, latents)
        nfe += len(schedule) - start
    return HighResolution(images=images, base=base, nfe=nfe)
