"""Classifier guidance (Dhariwal & Nichol 2021) with a PPAP guider or any classifier of noisy inputs.

With ε-prediction the guided noise is ``ε̂ = ε − s √(1 − ᾱ_t) ∇_{x_t} log p(y | x_t)``; the
samplers consume clean-sample estimates, and the same step in that form is
``x̂0 = x0 + s (1 − ᾱ_t) / √ᾱ_t ∇_{x_t} log p(y | x_t)``. Only the classifier is differentiated,
never the diffusion model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from difforge.plugin_api import classifier_free_guidance

from .classifier import LatentClassifier
from .experts import ExpertGuider


def classifier_guidance(guider: ExpertGuider | LatentClassifier, targets: Tensor, scale: float,
                        alphas_cumprod: Tensor) -> Callable:
    """A guidance with the signature of :func:`difforge.sampling.guidance.classifier_free_guidance`
    (pass it as ``backbone.sample(..., guidance=...)``): the classifier-free guided estimate plus
    ``scale`` times the classifier's gradient toward class ``targets`` (one index per sample).

    ``guider`` is a PPAP :class:`ExpertGuider` (the expert of each step's timestep range) or a
    plain classifier, which then sees the noisy ``x_t`` as if it were clean (the naive baseline).
    """
    logits_of = guider.logits if isinstance(guider, ExpertGuider) else (lambda x, _t: guider(x))
    alphas_cumprod = alphas_cumprod.float()

    def guidance(denoise, cond: Any, uncond: Any, cfg_scale: float, extra: Mapping[str, Any] | None = None,
                 uncond_extra: Mapping[str, Any] | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        base = classifier_free_guidance(denoise, cond, uncond, cfg_scale, extra=extra, uncond_extra=uncond_extra)

        def guided(x: Tensor, t: Tensor) -> Tensor:
            x0 = base(x, t)
            if scale == 0:
                return x0
            gradient = class_log_prob_gradient(logits_of, x, int(t.reshape(-1)[0]), targets.to(x.device))
            alpha = alphas_cumprod[t.long().cpu()].to(x).view(-1, *([1] * (x.dim() - 1)))
            return x0 + scale * (1 - alpha) / alpha.sqrt() * gradient

        return guided

    return guidance


def class_log_prob_gradient(logits_of: Callable[[Tensor, int], Tensor], x: Tensor, timestep: int,
                            targets: Tensor) -> Tensor:
    """``∇_x log p(y | x)`` of the classifier ``logits_of(x, timestep)`` for each row's class."""
    with torch.enable_grad():
        x = x.detach().float().requires_grad_(True)
        log_probs = torch.log_softmax(logits_of(x, timestep), dim=-1)
        chosen = log_probs.gather(1, targets.view(-1, 1)).sum()
        (gradient,) = torch.autograd.grad(chosen, x)
    return gradient
