"""Best-of-N: draw N independent samples per output and keep the one the reward scores highest,
the baseline every steering method is compared with at equal denoiser evaluations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from difforge.plugin_api import Steered

from .particles import Particles, parse_options


class BestOfNOptions(BaseModel):
    """Options of best-of-N (``--steer-option KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    sampler: str = Field("ddim", description="the sampler of the N independent samples")
    eta: float = Field(0.0, ge=0, description="DDIM's eta when sampler is ddim")


@torch.no_grad()
def best_of_n(backbone, prompts: Sequence[str] | None, *, reward, particles: int = 4, num_samples: int = 1,
              num_steps: int = 25, guidance_scale: float = 1.0, generator: torch.Generator | None = None,
              **options) -> Steered:
    """Best-of-N sampling: ``particles`` independent samples per output, the highest-reward one kept."""
    opts = parse_options(BestOfNOptions, "best-of-n", options)
    group = Particles.of(backbone, "best-of-n", prompts, num_samples, particles)
    sampler_options = {"eta": opts.eta} if opts.sampler == "ddim" else {}
    samples = backbone.sample(group.prompts, num_samples=group.rows, num_steps=num_steps, sampler=opts.sampler,
                              guidance_scale=guidance_scale, generator=generator, **sampler_options)
    scores = reward(samples.float(), group.prompts).float()
    rows = group.rows_of(group.grouped(scores).argmax(1, keepdim=True))
    return Steered(samples=samples[rows.to(samples.device)], rewards=scores[rows], nfe=particles * num_steps)
