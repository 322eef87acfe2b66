"""The sampling schedule: the discretisation a sampler walks, read off a diffusers scheduler."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingSchedule:
    """Timesteps (descending, as fed to the denoiser) and the noise level around each step.

    For variance-preserving models ``alphas[i]`` is ``alphas_cumprod`` at step ``i`` and
    ``alphas_prev[i]`` the one the step moves to. For flow models ``sigmas`` holds ``t`` in
    [0, 1] per step plus a final 0.
    """

    timesteps: Tensor
    alphas: Tensor | None = None
    alphas_prev: Tensor | None = None
    sigmas: Tensor | None = None

    def __len__(self) -> int:
        return len(self.timesteps)


def schedule_from_scheduler(scheduler, num_steps: int) -> SamplingSchedule:
    """Build the schedule the scheduler would use for ``num_steps`` (its spacing and shift)."""
    scheduler.set_timesteps(num_steps)
    timesteps = scheduler.timesteps.detach().clone()
    if hasattr(scheduler, "alphas_cumprod"):
        ac = scheduler.alphas_cumprod.detach().float()
        t = timesteps.long()
        alphas = ac[t]
        final = torch.tensor(1.0)
        if getattr(scheduler.config, "set_alpha_to_one", True) is False:
            final = ac[0]
        alphas_prev = torch.cat([alphas[1:], final.reshape(1)])
        return SamplingSchedule(timesteps=t, alphas=alphas, alphas_prev=alphas_prev)
    sigmas = scheduler.sigmas.detach().float()
    return SamplingSchedule(timesteps=timesteps.float(), sigmas=sigmas)
