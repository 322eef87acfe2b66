"""The noise levels of a variance-preserving schedule in the form the exponential-integrator
solvers use: ``alpha_t`` (signal scale), ``sigma_t`` (noise scale) and the half log-SNR
``lambda_t = log(alpha_t / sigma_t)`` at every grid point (Lu et al. 2022, §2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from difforge.plugin_api import SamplingSchedule


@dataclass(frozen=True)
class NoiseLevels:
    """``alpha``, ``sigma`` and ``lam`` (float64) at the ``n + 1`` points a schedule of ``n``
    steps visits: the ``n`` evaluated timesteps, then the point the last step reaches
    (``sigma = 0``, ``lam = inf`` when the schedule ends on clean data)."""

    alpha: Tensor
    sigma: Tensor
    lam: Tensor

    @classmethod
    def of(cls, schedule: SamplingSchedule, sampler: str) -> NoiseLevels:
        """The levels of ``schedule``; ``sampler`` names the caller in the error a schedule
        without ``alphas_cumprod`` (a flow model) raises."""
        if schedule.alphas is None:
            raise ValueError(f"sampler {sampler!r} needs a variance-preserving schedule (alphas_cumprod)")
        alphas_cumprod = torch.cat([schedule.alphas, schedule.alphas_prev[-1:]]).double().clamp(0, 1)
        alpha, sigma = alphas_cumprod.sqrt(), (1 - alphas_cumprod).sqrt()
        return cls(alpha=alpha, sigma=sigma, lam=alpha.log() - sigma.log())

    def first_order(self, i: int, x: Tensor, x0: Tensor) -> Tensor:
        """One DPM-Solver++(1) step from point ``i`` to ``i + 1`` (= DDIM; Lu et al. 2022, Eq. 9)."""
        h = self.lam[i + 1] - self.lam[i]
        return scalar(self.sigma[i + 1] / self.sigma[i], x) * x - scalar(self.alpha[i + 1] * torch.expm1(-h), x) * x0


def scalar(value: Tensor, like: Tensor) -> Tensor:
    """A float64 coefficient as a 0-d tensor of ``like``'s dtype and device."""
    return value.to(dtype=like.dtype, device=like.device)


def after_step(callback: Callable | None, i: int, t: Tensor, x: Tensor, x0: Tensor) -> tuple[Tensor, bool]:
    """Run the samplers' per-step callback; returns the sample to go on with and whether the
    callback replaced it."""
    if callback is None:
        return x, False
    replaced = callback(step=i, t=t, x=x, x0=x0)
    return (x, False) if replaced is None else (replaced, True)
