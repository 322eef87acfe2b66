"""Guidance: wrappers that turn a conditional denoiser into a guided one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: ``denoise(x, t, cond) -> x0_hat``
ConditionalDenoise = Callable[[Tensor, Tensor, Any], Tensor]


def classifier_free_guidance(
    denoise: ConditionalDenoise, cond: Any, uncond: Any, scale: float
) -> Callable[[Tensor, Tensor], Tensor]:
    """Classifier-free guidance, ``x0_u + s (x0_c - x0_u)`` in one batched call (Ho & Salimans 2022).

    Guiding the x0 estimate is equivalent to guiding eps or v, since each is affine in the
    model output at a fixed ``(x_t, t)``. ``scale == 1`` skips the unconditional pass.
    """
    if scale == 1.0:
        return lambda x, t: denoise(x, t, cond)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        both = denoise(torch.cat([x, x]), torch.cat([t, t]), _cat(uncond, cond))
        x0_uncond, x0_cond = both.chunk(2)
        return x0_uncond + scale * (x0_cond - x0_uncond)

    return guided


def _cat(a: Any, b: Any) -> Any:
    if a is None and b is None:
        return None
    return torch.cat([a, b])


BUILTIN_GUIDANCE = {"cfg": classifier_free_guidance}
