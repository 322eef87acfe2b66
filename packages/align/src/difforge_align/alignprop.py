"""AlignProp (Prabhudesai et al. 2023): backpropagate a differentiable reward through the
whole sampling chain into the trained (adapter) weights.

Each step samples images with deterministic DDIM from the batch's prompts, decodes them, and
minimises ``−reward``. Memory stays bounded by gradient checkpointing of every denoiser call
and by randomised truncated backpropagation: gradients flow only through the last ``K`` steps,
with ``K`` drawn uniformly from ``1..truncation`` each step (the earlier steps run without
a graph), which the paper found also prevents over-optimisation.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn
from torch.utils.checkpoint import checkpoint

from difforge.plugin_api import Objective, schedule_from_scheduler

from .policy import ddim_step, guided_x0
from .rewards import resolve_reward


class AlignPropOptions(BaseModel):
    """Options of the ``alignprop`` objective."""

    model_config = ConfigDict(extra="forbid")

    reward: str = Field(description="a registered, differentiable reward")
    num_steps: int = Field(10, ge=1)
    guidance_scale: float = Field(4.0, ge=1)
    truncation: int = Field(3, ge=1, description="backpropagate through at most the last K steps")
    randomize_truncation: bool = Field(True, description="draw K uniformly from 1..truncation each step")
    gradient_checkpointing: bool = True
    samples_per_prompt: int = Field(1, ge=1)

    @field_validator("reward")
    @classmethod
    def _differentiable_reward(cls, name: str) -> str:
        resolve_reward(name, "alignprop", differentiable=True)
        return name


class AlignPropObjective(Objective):
    """−reward of images sampled with gradients through the last K DDIM steps and the VAE."""

    name = "alignprop"
    requires = frozenset({"captions", "reward", "on_policy_samples"})
    options_model = AlignPropOptions

    def __init__(self, backbone, **options: Any) -> None:
        super().__init__(backbone, **options)
        self.reward = resolve_reward(self.options.reward, self.name, differentiable=True)
        self.samples_used = 0

    def state_dict(self) -> dict[str, Any]:
        """The count of generated samples (the rest of the run's state is the trainer's)."""
        return {"samples_used": self.samples_used}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the sample count of :meth:`state_dict`."""
        self.samples_used = int(state["samples_used"])

    def loss(self, batch: dict[str, Any], denoiser: nn.Module, generator: torch.Generator):
        o, bb = self.options, self.backbone
        prompts = [p for p in batch["caption"] for _ in range(o.samples_per_prompt)]
        cond = bb.encode_prompts(prompts)
        null = bb.null_condition(len(prompts)) if o.guidance_scale != 1.0 else None
        schedule = schedule_from_scheduler(bb.scheduler, o.num_steps)
        k = o.truncation
        if o.randomize_truncation:
            k = int(torch.randint(1, o.truncation + 1, (1,), generator=generator))
        first_with_grad = max(0, len(schedule) - k)
        x = torch.randn((len(prompts), *bb.sample_shape()), generator=generator).to(bb.device)

        def x0_of(x_: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            return guided_x0(bb, denoiser, x_, timestep, cond, null, o.guidance_scale)

        for i, t in enumerate(schedule.timesteps):
            timestep = t.reshape(1).expand(len(prompts)).to(x.device)
            a, a_prev = schedule.alphas[i].to(x), schedule.alphas_prev[i].to(x)
            if i < first_with_grad:
                with torch.no_grad():
                    x = ddim_step(x0_of(x, timestep), x, a, a_prev, eta=0.0)[0]
                continue
            x0 = checkpoint(x0_of, x, timestep, use_reentrant=False) if o.gradient_checkpointing else x0_of(x, timestep)
            x = ddim_step(x0, x, a, a_prev, eta=0.0)[0]
        images = bb.decode(x).clamp(-1, 1)
        rewards = self.reward(images.float(), prompts)
        self.samples_used += len(prompts)
        loss = -rewards.mean()
        return loss, {"loss": loss.detach(), "reward": rewards.mean().detach(), "truncation": float(k)}
