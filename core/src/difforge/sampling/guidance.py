"""Guidance: wrappers that turn a conditional denoiser into a guided one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

#: ``denoise(x, t, cond, extra) -> x0_hat``; ``extra`` maps further model inputs to values, one row per sample
ConditionalDenoise = Callable[[Tensor, Tensor, Any, Mapping[str, Any]], Tensor]


def classifier_free_guidance(
    denoise: ConditionalDenoise, cond: Any, uncond: Any, scale: float,
    extra: Mapping[str, Any] | None = None, uncond_extra: Mapping[str, Any] | None = None,
) -> Callable[[Tensor, Tensor], Tensor]:
    """Classifier-free guidance, ``x0_u + s (x0_c - x0_u)`` in one batched call (Ho & Salimans 2022).

    Guiding the x0 estimate is equivalent to guiding eps or v, since each is affine in the
    model output at a fixed ``(x_t, t)``. ``scale == 1`` skips the unconditional pass. The
    extra model inputs are passed through, as k-diffusion passes ``extra_args``: the
    unconditional half gets ``uncond_extra``'s value of a key where it has one, else the same.
    """
    extra = dict(extra or {})
    if scale == 1.0:
        return lambda x, t: denoise(x, t, cond, extra)
    if uncond is None and cond is not None:
        raise ValueError("classifier-free guidance needs an unconditional input for this model; "
                         "sample with guidance_scale=1")
    both_extra = {key: _cat((uncond_extra or {}).get(key, value), value) for key, value in extra.items()}

    def guided(x: Tensor, t: Tensor) -> Tensor:
        both = denoise(torch.cat([x, x]), torch.cat([t, t]), _cat(uncond, cond), both_extra)
        x0_uncond, x0_cond = both.chunk(2)
        return x0_uncond + scale * (x0_cond - x0_uncond)

    return guided


def guidance_scale_embedding(w: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of ``w = guidance_scale - 1``, shape ``(len(w), dim)``: the input of a
    denoiser distilled with the guidance scale as a condition (LCM, Luo et al. 2023, after VDM's
    embedding of ``1000 w``; diffusers' ``LatentConsistencyModelPipeline`` computes the same)."""
    half = dim // 2
    frequencies = torch.exp(torch.arange(half, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    angles = (w.float().reshape(-1) * 1000.0)[:, None] * frequencies[None, :]
    return torch.nn.functional.pad(torch.cat([angles.sin(), angles.cos()], dim=1), (0, dim % 2))


def _cat(a: Any, b: Any) -> Any:
    if a is None and b is None:
        return None
    if isinstance(b, Tensor):
        return torch.cat([a, b])
    return b  # a value that is not per sample (a flag, a scale) is shared by both halves
