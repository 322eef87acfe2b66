"""Feynman–Kac steering (Singhal et al. 2025, "A General Framework for Inference-time Scaling
and Steering of Diffusion Models").

``k`` particles per output sample follow the model's own stochastic sampler; at chosen steps
each particle gets a potential ``G_t`` computed from the reward of its clean-sample estimate
``r_t = r(x0_hat(x_t))``, and the particles of an output sample are resampled in proportion to
their accumulated weights. The potentials (the paper's Section 3) are

- ``max``:        ``G_t = exp(λ max_{s ≥ t} r_s)``
- ``sum``:        ``G_t = exp(λ Σ_{s ≥ t} r_s)``
- ``difference``: ``G_t = exp(λ (r_t − r_{t+1}))``
- ``immediate``:  ``G_t = exp(λ r_t)``

and the last one, on the final samples, is ``exp(λ r(x_0)) / Π_t G_t`` along each particle's
lineage, so that the particles target ``p(x_0) exp(λ r(x_0))`` whatever the intermediate
potentials were (the difference potential telescopes to it by itself). Resampling happens at
the scheduled steps when a group's effective sample size is below ``ess_threshold · k``; with
uniform weights (a constant reward) nothing is resampled and FK steering is plain sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from difforge.plugin_api import Steered

from .particles import (
    Particles,
    check_stochastic,
    effective_sample_size,
    parse_options,
    resample,
    steering_generator,
    x0_reward,
)


class FKOptions(BaseModel):
    """Options of FK steering (``--steer-option KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    potential: Literal["max", "sum", "difference", "immediate"] = "max"
    lmbda: float = Field(10.0, ge=0, description="λ: the tilt of the target p(x0) exp(λ r(x0))")
    resample_every: int = Field(5, ge=1, description="resample every this many sampler steps")
    resample_start: int = Field(0, ge=0, description="first step (index) that may resample")
    resample_end: int | None = Field(None, ge=0, description="last step that may resample (default: the last "
                                                              "but one)")
    ess_threshold: float = Field(1.0, ge=0, le=1, description="resample a group when its effective sample size "
                                                              "is below this share of k (1: whenever the weights "
                                                              "are not uniform; 0: never)")
    resampling: Literal["multinomial", "systematic"] = "multinomial"
    select: Literal["best", "sample"] = Field("best", description="the output of each group: its highest-reward "
                                                                 "final particle, or one drawn by the final weights")
    sampler: str = Field("ddpm", description="the stochastic proposal: ddpm, consistency, or ddim with eta > 0")
    eta: float = Field(1.0, ge=0, description="DDIM's eta when sampler is ddim")


class FKResampler:
    """The per-step callback of FK steering: potentials, weights and resampling (the sampler's
    ``callback(step, t, x, x0)``; it returns the resampled ``x``)."""

    def __init__(self, particles: Particles, value, options: FKOptions, num_steps: int,
                 generator: torch.Generator) -> None:
        self.particles, self.value, self.options, self.generator = particles, value, options, generator
        end = num_steps - 2 if options.resample_end is None else min(options.resample_end, num_steps - 2)
        self.steps = set(range(options.resample_start, end + 1, options.resample_every))
        shape = (particles.groups, particles.k)
        self.log_weights = torch.zeros(shape, dtype=torch.float64)
        self.log_potentials = torch.zeros(shape, dtype=torch.float64)  # Π G along each lineage
        self.history: Tensor | None = None  # running max / sum / previous reward, per potential
        self.resampled_steps: list[int] = []

    def _potential(self, reward: Tensor) -> Tensor:
        kind, lmbda = self.options.potential, self.options.lmbda
        if kind == "immediate":
            return lmbda * reward
        if kind == "difference":
            previous = torch.zeros_like(reward) if self.history is None else self.history
            self.history = reward
            return lmbda * (reward - previous)
        if kind == "max":
            self.history = reward if self.history is None else torch.maximum(self.history, reward)
        else:
            self.history = reward if self.history is None else self.history + reward
        return lmbda * self.history

    def __call__(self, *, step: int, t: Tensor, x: Tensor, x0: Tensor) -> Tensor | None:
        if step not in self.steps:
            return None
        reward = self.particles.grouped(self.value(x0).double().cpu())
        log_g = self._potential(reward)
        self.log_weights += log_g
        self.log_potentials += log_g
        ess = effective_sample_size(self.log_weights)
        due = ess < self.options.ess_threshold * self.particles.k - 1e-9
        if not due.any():
            return None
        ancestors = torch.arange(self.particles.k).expand(self.particles.groups, -1).clone()
        ancestors[due] = resample(self.log_weights[due], self.generator, self.options.resampling)
        self.log_weights[due] = 0.0
        self.log_potentials = self.log_potentials.gather(1, ancestors)
        if self.history is not None:
            self.history = self.history.gather(1, ancestors)
        self.resampled_steps.append(step)
        return x[self.particles.rows_of(ancestors.to(x.device))]

    def final_log_weights(self, reward: Tensor) -> Tensor:
        """The weights after the last potential ``exp(λ r(x_0)) / Π G`` (the difference potential's
        own last term telescopes to the same target)."""
        reward = self.particles.grouped(reward.double().cpu())
        if self.options.potential == "difference":
            previous = torch.zeros_like(reward) if self.history is None else self.history
            return self.log_weights + self.options.lmbda * (reward - previous)
        return self.log_weights + self.options.lmbda * reward - self.log_potentials


@torch.no_grad()
def fk_steering(backbone, prompts: Sequence[str] | None, *, reward, particles: int = 4, num_samples: int = 1,
                num_steps: int = 25, guidance_scale: float = 1.0, generator: torch.Generator | None = None,
                **options) -> Steered:
    """Feynman–Kac steering (Singhal et al. 2025): ``particles`` interacting samples per output,
    resampled by reward potentials on their x0 estimates; see :class:`FKOptions`."""
    opts = parse_options(FKOptions, "fk", options)
    check_stochastic(backbone, "fk", opts.sampler, opts.eta)
    group = Particles.of(backbone, "fk", prompts, num_samples, particles)
    value = x0_reward(backbone, reward, group.prompts)
    resampler = FKResampler(group, value, opts, num_steps, steering_generator(generator))
    sampler_options = {"eta": opts.eta} if opts.sampler == "ddim" else {}
    latents = backbone.sample(group.prompts, num_samples=group.rows, num_steps=num_steps, sampler=opts.sampler,
                              guidance_scale=guidance_scale, generator=generator, callback=resampler, decode=False,
                              **sampler_options)
    samples = backbone.decode(latents).clamp(-1, 1)
    final_reward = reward(samples.float(), group.prompts).float()
    scores = group.grouped(final_reward)
    if opts.select == "best":
        chosen = scores.argmax(1, keepdim=True)
    else:
        weights = torch.softmax(resampler.final_log_weights(final_reward), dim=-1)
        chosen = torch.multinomial(weights, 1, generator=resampler.generator)
    rows = group.rows_of(chosen)
    return Steered(samples=samples[rows.to(samples.device)], rewards=final_reward[rows], nfe=particles * num_steps)
