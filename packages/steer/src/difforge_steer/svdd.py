"""Soft value-based decoding, SVDD-PM (Li et al. 2024, "Derivative-Free Guidance in Continuous
and Discrete Diffusion Models with Soft Value-Based Decoding", Algorithm 1).

At every step, ``M`` candidates of ``x_{t-1}`` are drawn from the model's own ancestral step
``p(x_{t-1} | x_t)``; each gets the soft value ``v(x_{t-1}) = r(x0_hat(x_{t-1}))`` (the
posterior-mean approximation: the reward of the model's clean-sample estimate, no value network)
and one is kept, drawn with probability ``∝ exp(v / α)`` (``α = 0``: the arg-max). The reward
needs no gradient. The clean-sample estimates of the kept candidate are reused for the next
step, so the cost is ``1 + (n − 1) M`` denoiser evaluations per sample for ``n`` steps, and
``M = 1`` is exactly ancestral (DDPM) sampling with the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from difforge.plugin_api import Steered, UsageError, ddpm_step, schedule_from_scheduler, timestep_batch

from .particles import Particles, parse_options, steering_generator, x0_reward


class SVDDOptions(BaseModel):
    """Options of SVDD (``--steer-option KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.0, ge=0, description="temperature of the candidate choice ∝ exp(v/α); 0 keeps the "
                                                "highest-value candidate")
    sampler: str = Field("ddpm", description="the proposal; SVDD draws its candidates from the ancestral (DDPM) step")


@torch.no_grad()
def svdd(backbone, prompts: Sequence[str] | None, *, reward, particles: int = 4, num_samples: int = 1,
         num_steps: int = 25, guidance_scale: float = 1.0, generator: torch.Generator | None = None,
         **options) -> Steered:
    """SVDD-PM (Li et al. 2024): ``particles`` candidates of every ancestral step, the one whose
    x0 estimate scores highest (or drawn ∝ exp(value/α)) kept; see :class:`SVDDOptions`."""
    opts = parse_options(SVDDOptions, "svdd", options)
    if opts.sampler != "ddpm":
        raise UsageError(f"steering 'svdd': its candidates are ancestral (ddpm) steps; sampler {opts.sampler!r} "
                         "is not supported")
    schedule = schedule_from_scheduler(backbone.scheduler, num_steps)
    if schedule.alphas is None:
        raise UsageError("steering 'svdd': needs a variance-preserving (DDPM-family) scheduler")
    group = Particles.of(backbone, "svdd", prompts, num_samples, particles)
    value = x0_reward(backbone, reward, group.prompts)
    choose = steering_generator(generator)
    cond = backbone.encode_prompts(group.group_prompts) if group.group_prompts else None
    cond_rows = cond.repeat_interleave(particles, 0) if cond is not None else None
    denoise_groups = backbone.guided_denoise(cond, guidance_scale, group.groups)
    denoise_rows = backbone.guided_denoise(cond_rows, guidance_scale, group.rows)
    dtype = next(backbone.denoiser.parameters()).dtype
    shape = backbone.sample_shape()
    x = torch.randn((group.groups, *shape), generator=generator, dtype=torch.float32).to(backbone.device, dtype)
    x0 = denoise_groups(x, timestep_batch(schedule.timesteps[0], x))
    for i in range(len(schedule)):
        alpha, alpha_prev = schedule.alphas[i].to(x), schedule.alphas_prev[i].to(x)
        if i == len(schedule) - 1:
            x = ddpm_step(x, x0, alpha, alpha_prev, generator, noise=False)
            break
        candidates = ddpm_step(x.repeat_interleave(particles, 0), x0.repeat_interleave(particles, 0), alpha,
                               alpha_prev, generator)
        candidate_x0 = denoise_rows(candidates, timestep_batch(schedule.timesteps[i + 1], candidates))
        values = group.grouped(value(candidate_x0))
        if opts.alpha == 0:
            kept = values.argmax(1, keepdim=True)
        else:
            kept = torch.multinomial(torch.softmax(values.double().cpu() / opts.alpha, dim=1), 1, generator=choose)
        rows = group.rows_of(kept.to(candidates.device))
        x, x0 = candidates[rows], candidate_x0[rows]
    samples = backbone.decode(x).clamp(-1, 1)
    return Steered(samples=samples, rewards=reward(samples.float(), group.group_prompts).float(),
                   nfe=1 + (num_steps - 1) * particles)
