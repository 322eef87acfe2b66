"""Samplers as pure functions.

Each sampler takes ``denoise(x, t) -> x0_hat`` (the parameterisation has already turned the
model output into a clean-sample estimate), the initial noise, and a
:class:`~difforge.sampling.schedule.SamplingSchedule`. After every step it calls
``callback(step=i, t=t, x=x, x0=x0_hat)``; if the callback returns a tensor it replaces ``x``,
which is how inference-time steering plugs in without forking the loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .schedule import SamplingSchedule

Denoise = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[..., Tensor | None]


def _timestep(t: Tensor, x: Tensor) -> Tensor:
    return t.reshape(1).to(x.device).expand(x.shape[0])


def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)


def _after_step(callback, i, t, x, x0) -> Tensor:
    if callback is None:
        return x
    replaced = callback(step=i, t=t, x=x, x0=x0)
    return x if replaced is None else replaced


def _eps(x: Tensor, x0: Tensor, alpha: Tensor) -> Tensor:
    return (x - alpha.sqrt() * x0) / (1 - alpha).sqrt()


def _require_vp(schedule: SamplingSchedule, name: str) -> None:
    if schedule.alphas is None:
        raise ValueError(f"sampler {name!r} needs a variance-preserving schedule (alphas_cumprod)")


def sample_ddpm(
    denoise: Denoise,
    noise: Tensor,
    schedule: SamplingSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    clip_x0: float | None = None,
) -> Tensor:
    """Ancestral DDPM sampling with the posterior variance ``beta~_t`` (Ho et al. 2020, Alg. 2)."""
    _require_vp(schedule, "ddpm")
    x = noise
    for i, t in enumerate(schedule.timesteps):
        a, a_prev = schedule.alphas[i].to(x), schedule.alphas_prev[i].to(x)
        x0 = denoise(x, _timestep(t, x))
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        x = _after_step(callback, i, t, ddpm_step(x, x0, a, a_prev, generator, noise=i < len(schedule) - 1), x0)
    return x


def ddpm_step(x: Tensor, x0: Tensor, alpha: Tensor, alpha_prev: Tensor, generator: torch.Generator | None,
              *, noise: bool = True) -> Tensor:
    """One ancestral step ``x_{t-1} ~ q(x_{t-1} | x_t, x0)`` (Ho et al. 2020, Alg. 2), drawing its
    noise from ``generator`` as :func:`sample_ddpm` does; ``noise=False`` returns the mean (the
    last step)."""
    mean, std = ddpm_posterior(x, x0, alpha, alpha_prev)
    return mean + std * _randn(x, generator) if noise else mean


def timestep_batch(t: Tensor, x: Tensor) -> Tensor:
    """The scalar timestep ``t`` as one value per row of ``x``, as the samplers call ``denoise``."""
    return _timestep(t, x)


def ddpm_posterior(x: Tensor, x0: Tensor, alpha: Tensor, alpha_prev: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of ``q(x_{t-1} | x_t, x0)`` between the cumulative alphas
    ``alpha`` (at t) and ``alpha_prev`` (Ho et al. 2020, Eq. 6-7): one ancestral step."""
    step_alpha = alpha / alpha_prev
    step_beta = 1 - step_alpha
    mean = (alpha_prev.sqrt() * step_beta / (1 - alpha)) * x0 + (step_alpha.sqrt() * (1 - alpha_prev) / (1 - alpha)) * x
    variance = ((1 - alpha_prev) / (1 - alpha) * step_beta).clamp_min(1e-20)
    return mean, variance.sqrt()


def sample_ddim(
    denoise: Denoise,
    noise: Tensor,
    schedule: SamplingSchedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    clip_x0: float | None = None,
) -> Tensor:
    """DDIM; ``eta=0`` is deterministic, ``eta=1`` matches DDPM's variance (Song et al. 2021, Eq. 12)."""
    _require_vp(schedule, "ddim")
    x = noise
    for i, t in enumerate(schedule.timesteps):
        a, a_prev = schedule.alphas[i].to(x), schedule.alphas_prev[i].to(x)
        x0 = denoise(x, _timestep(t, x))
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        eps = _eps(x, x0, a)
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
        x_next = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0:
            x_next = x_next + sigma * _randn(x, generator)
        x = _after_step(callback, i, t, x_next, x0)
    return x


def sample_consistency(
    denoise: Denoise,
    noise: Tensor,
    schedule: SamplingSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Multistep consistency sampling: predict x0, re-noise it to the next level (Song et al. 2023, Alg. 1)."""
    _require_vp(schedule, "consistency")
    x = noise
    for i, t in enumerate(schedule.timesteps):
        a_prev = schedule.alphas_prev[i].to(x)
        x0 = denoise(x, _timestep(t, x))
        x_next = a_prev.sqrt() * x0
        if i < len(schedule) - 1:
            x_next = x_next + (1 - a_prev).sqrt() * _randn(x, generator)
        x = _after_step(callback, i, t, x_next, x0)
    return x


def sample_euler(
    denoise: Denoise,
    noise: Tensor,
    schedule: SamplingSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler's method on the probability-flow ODE in sigma space (Karras et al. 2022, Alg. 1)."""
    _require_vp(schedule, "euler")
    sigmas = ((1 - schedule.alphas) / schedule.alphas).sqrt()
    sigmas = torch.cat([sigmas, sigmas.new_zeros(1)]).to(noise)
    x = noise * sigmas[0]
    for i, t in enumerate(schedule.timesteps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0 = denoise(x / (sigma**2 + 1).sqrt(), _timestep(t, x))
        d = (x - x0) / sigma
        x = _after_step(callback, i, t, x + d * (sigma_next - sigma), x0)
    return x


def sample_flow_euler(
    denoise: Denoise,
    noise: Tensor,
    schedule: SamplingSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Euler integration of a rectified-flow ODE from t=1 to t=0 (Liu et al. 2023; Esser et al. 2024)."""
    if schedule.sigmas is None:
        raise ValueError("sampler 'flow_euler' needs a flow-matching schedule (sigmas)")
    sigmas = schedule.sigmas.to(noise)
    x = noise
    for i, t in enumerate(schedule.timesteps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0 = denoise(x, _timestep(t, x))
        velocity = (x - x0) / sigma
        x = _after_step(callback, i, t, x + (sigma_next - sigma) * velocity, x0)
    return x
