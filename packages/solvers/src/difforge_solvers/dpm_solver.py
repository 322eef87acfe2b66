"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models", Algorithm 2): the multistep second-order solver of the
probability-flow ODE in data prediction, the exponential integrator

    x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i,
    D_i = (1 + 1 / (2 r_i)) x0_{i-1} - 1 / (2 r_i) x0_{i-2},  r_i = h_{i-1} / h_i,

with ``h_i = lambda_{t_i} - lambda_{t_{i-1}}``; the first step and the last (into sigma = 0, or
any last step of a schedule under 15 steps) are first order, as diffusers'
``DPMSolverMultistepScheduler`` takes them, so both give the same samples on one schedule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difforge.plugin_api import SamplingSchedule, timestep_batch

from .noise_levels import NoiseLevels, after_step, scalar


def sample_dpmpp_2m(
    denoise,
    noise: Tensor,
    schedule: SamplingSchedule,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    lower_order_final: bool = True,
) -> Tensor:
    """DPM-Solver++(2M), the multistep second-order data-prediction ODE solver (Lu et al. 2022, Alg. 2)."""
    levels = NoiseLevels.of(schedule, "dpmpp_2m")
    n = len(schedule)
    x, previous = noise, None
    for i, t in enumerate(schedule.timesteps):
        x0 = denoise(x, timestep_batch(t, x))
        last = i == n - 1 and ((lower_order_final and n < 15) or levels.sigma[i + 1] == 0)
        if previous is None or last:
            x = levels.first_order(i, x, x0)
        else:
            h, h_last = levels.lam[i + 1] - levels.lam[i], levels.lam[i] - levels.lam[i - 1]
            r = h_last / h
            d = x0 + scalar(1 / (2 * r), x0) * (x0 - previous)
            x = (scalar(levels.sigma[i + 1] / levels.sigma[i], x) * x
                 - scalar(levels.alpha[i + 1] * torch.expm1(-h), x) * d)
        previous = x0
        x, _ = after_step(callback, i, t, x, x0)
    return x
