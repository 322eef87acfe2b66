"""Samplers of mean-reverting diffusion (:mod:`difforge_solvers.mean_reverting`).

MR Sampler (Li et al. 2025, "MRS: A Fast Sampler for Mean Reverting Diffusion based on ODE and
SDE Solvers") solves the reverse SDE and the probability-flow ODE of MR diffusion
semi-analytically: in ``lambda_t = log(alpha_t / sigma_t)`` the linear part (the drift towards
``mu`` and the decay of ``x - mu``) is integrated exactly and only the network's integral is
approximated. With a data prediction ``x0`` and ``h = lambda_t - lambda_s`` the steps are

    ODE: x_t = mu + (sigma_t / sigma_s) (x_s - mu) + alpha_t (1 - e^{-h}) (x0 - mu)
    SDE: x_t = mu + (sigma_t / sigma_s) e^{-h} (x_s - mu) + alpha_t (1 - e^{-2h}) (x0 - mu)
              + sigma_t sqrt(1 - e^{-2h}) z

and with a noise prediction ``eps``

    ODE: x_t = mu + (alpha_t / alpha_s) (x_s - mu) - sigma_t (e^h - 1) eps
    SDE: x_t = mu + (alpha_t / alpha_s) (x_s - mu) - 2 sigma_t (e^h - 1) eps + sigma_t sqrt(e^{2h} - 1) z;

the second-order (multistep) versions replace ``x0`` / ``eps`` by their extrapolation from the
previous step, as DPM-Solver(++)-2M does. The naive baselines are Euler-Maruyama on the reverse SDE
(IR-SDE's own sampler) and Euler on the probability-flow ODE, both in ``t``.

Every sampler takes the data prediction ``denoise(x, t) -> x0`` (``t`` one time per sample, see
:class:`~difforge_solvers.mean_reverting.MeanRevertingDenoiser`), the condition ``mean``, the
starting point ``x`` (:meth:`MeanRevertingSchedule.terminal`) and the number of network
evaluations ``steps``; ``callback(step=, t=, x=, x0=)`` runs after every step and may return a
replacement sample, as the core samplers' does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .boundary import BoundarySearch, explore_boundary
from .mean_reverting import MeanRevertingDenoiser, MeanRevertingSchedule
from .noise_levels import NoiseLevels, after_step, scalar


def sample_mrs(
    denoise,
    x: Tensor,
    mean: Tensor,
    schedule: MeanRevertingSchedule,
    steps: int,
    *,
    prediction: str = "data",
    order: int = 2,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    callback=None,
) -> Tensor:
    """MR Sampler, the semi-analytic ODE / SDE solver of MR diffusion (Li et al. 2025; steps above)."""
    if prediction not in ("data", "noise") or order not in (1, 2):
        raise ValueError(f"MR Sampler has data or noise prediction of order 1 or 2, got {prediction!r}, {order}")
    times = schedule.times(steps)
    alpha, sigma = schedule.alpha(times), schedule.sigma(times)
    levels = NoiseLevels(alpha=alpha, sigma=sigma, lam=alpha.log() - sigma.log())
    lam = levels.lam
    previous = None
    for i in range(steps):
        t = times[i]
        x0 = denoise(x, t.expand(x.shape[0]).to(x.dtype))
        model = x0 if prediction == "data" else _noise(x, x0, mean, alpha[i], sigma[i])
        if sigma[i + 1] == 0:
            x = x0  # the limit of every step into sigma = 0
        else:
            h = lam[i + 1] - lam[i]
            corrected = model
            if order == 2 and previous is not None:
                r = (lam[i] - lam[i - 1]) / h
                corrected = model + scalar(1 / (2 * r), model) * (model - previous)
            if prediction == "data" and not stochastic:  # DPM-Solver++'s step on the residual x - mu
                x = mean + levels.first_order(i, x - mean, corrected - mean)
            else:
                x = _step(x, corrected, mean, alpha[i], sigma[i], alpha[i + 1], sigma[i + 1], h, prediction,
                          stochastic, generator)
        previous = model
        x, _ = after_step(callback, i, t, x, x0)
    return x


def _noise(x: Tensor, x0: Tensor, mean: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The noise prediction equivalent to the data prediction ``x0`` at ``x``."""
    return (x - mean - scalar(alpha, x) * (x0 - mean)) / scalar(sigma, x)


def _step(x, model, mean, alpha_s, sigma_s, alpha_t, sigma_t, h, prediction, stochastic, generator):
    """One MR Sampler step from ``s`` to ``t`` with the (extrapolated) prediction ``model``: the
    data-prediction SDE step or a noise-prediction step (the data ODE step is DPM-Solver++'s)."""
    residual = x - mean
    if prediction == "data":
        return mean + (scalar(sigma_t / sigma_s * torch.exp(-h), x) * residual
                       - scalar(alpha_t * torch.expm1(-2 * h), x) * (model - mean)
                       + scalar(sigma_t * (-torch.expm1(-2 * h)).sqrt(), x) * _randn(x, generator))
    out = scalar(alpha_t / alpha_s, x) * residual
    if stochastic:
        return mean + out - scalar(2 * sigma_t * torch.expm1(h), x) * model + scalar(
            sigma_t * torch.expm1(2 * h).sqrt(), x) * _randn(x, generator)
    return mean + out - scalar(sigma_t * torch.expm1(h), x) * model


def sample_mr_euler_maruyama(
    denoise, x: Tensor, mean: Tensor, schedule: MeanRevertingSchedule, steps: int, *,
    generator: torch.Generator | None = None, callback=None,
) -> Tensor:
    """Euler-Maruyama on the reverse MR SDE, IR-SDE's sampler (Luo et al. 2023)."""
    return _euler(denoise, x, mean, schedule, steps, stochastic=True, generator=generator, callback=callback)


def sample_mr_euler(
    denoise, x: Tensor, mean: Tensor, schedule: MeanRevertingSchedule, steps: int, *, callback=None,
) -> Tensor:
    """Euler on the probability-flow ODE of MR diffusion (the naive solver of Li et al. 2025's ODE)."""
    return _euler(denoise, x, mean, schedule, steps, stochastic=False, generator=None, callback=callback)


def _euler(denoise, x, mean, schedule, steps, *, stochastic, generator, callback):
    """``dx = [theta (mu - x) - c g^2 score] dt (+ g dw)`` stepped backwards, ``c = 1`` (SDE) or
    ``1/2`` (ODE), score ``-(x - mu - alpha (x0 - mu)) / sigma^2``; ``theta dt`` is the step's
    increment of ``theta_bar = -log alpha`` (IR-SDE's discrete clock, so no step is spent where
    ``theta_t`` vanishes)."""
    times = schedule.times(steps)
    alpha, sigma = schedule.alpha(times), schedule.sigma(times)
    for i in range(steps):
        t = times[i]
        x0 = denoise(x, t.expand(x.shape[0]).to(x.dtype))
        theta_dt = (alpha[i + 1] / alpha[i]).log()
        g2_dt = 2 * schedule.scale**2 * theta_dt
        score = -_noise(x, x0, mean, alpha[i], sigma[i]) / scalar(sigma[i], x)
        x = x - scalar(theta_dt, x) * (mean - x) + scalar(g2_dt * (1.0 if stochastic else 0.5), x) * score
        if stochastic and i < steps - 1:
            x = x + scalar(g2_dt.sqrt(), x) * _randn(x, generator)
        x, _ = after_step(callback, i, t, x, x0)
    return x


@torch.no_grad()
def search_mr_boundary(network, schedule: MeanRevertingSchedule, degraded: Tensor, score, *, steps: int = 10,
                       candidates: int = 32, generator: torch.Generator | None = None, **options) -> BoundarySearch:
    """Optimal boundary condition (Ma et al. 2024) of MR diffusion: the noise ``eps*`` of the start
    ``mu + sigma_1 eps*`` shared by every input, explored on the reference batch ``degraded``, each
    candidate solved with MR Sampler (``steps``, ``options``; an ODE) and scored by
    ``score(restored) -> float`` (e.g. the mean PSNR against the references' clean images)."""
    if options.get("stochastic"):
        raise ValueError("an optimal boundary condition is a start of the ODE; the SDE solver adds noise")
    denoise = MeanRevertingDenoiser(network, schedule, degraded)

    def evaluate(candidate: Tensor) -> float:
        start = schedule.terminal(degraded, noise=candidate.expand_as(degraded))
        return score(sample_mrs(denoise, start, degraded, schedule, steps, **options))

    return explore_boundary(evaluate, tuple(degraded.shape[1:]), candidates=candidates, generator=generator)


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
