"""DDPO (Black et al. 2023): policy-gradient RL over the denoising MDP.

Each round samples trajectories with stochastic DDIM (``eta > 0``) for the batch's prompts,
scores the final images with a reward, and normalises the rewards per prompt into advantages.
The round is then trained for ``inner_epochs`` passes, one optimizer step per minibatch of
trajectories, with the PPO-clipped importance-sampling objective over the sampled timesteps:

    L = E_t max(−A · r_t, −A · clip(r_t, 1 − ε, 1 + ε)),   r_t = p_θ(x_{t−1}|x_t) / p_old(x_{t−1}|x_t)

The data are prompts (any dataset with captions); while a round is being trained, the
incoming batches are not used. RLCM (the ``rlcm`` objective) is the same update where the
policy is multistep consistency sampling with 2–4 steps.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from difforge.plugin_api import Objective

from .policy import (
    Trajectories,
    round_from_state,
    round_minibatches,
    round_state,
    sample_trajectories,
    step_log_prob,
)
from .rewards import PerPromptStatTracker, resolve_reward


class DDPOOptions(BaseModel):
    """Options of the ``ddpo`` objective."""

    model_config = ConfigDict(extra="forbid")

    reward: str = Field(description="a registered reward name")
    num_steps: int = Field(10, ge=1, description="DDIM steps per trajectory")
    eta: float = Field(1.0, gt=0, description="DDIM stochasticity; > 0 so every step has a likelihood")
    guidance_scale: float = Field(4.0, ge=1)
    samples_per_prompt: int = Field(4, ge=1, description="trajectories per batch prompt per round")
    minibatch_size: int | None = Field(None, ge=1, description="trajectories per optimizer step (default: the round)")
    inner_epochs: int = Field(1, ge=1)
    clip_range: float = Field(1e-4, gt=0)
    adv_clip_max: float = Field(5.0, gt=0)
    timestep_fraction: float = Field(1.0, gt=0, le=1)
    per_prompt_stat_tracking: bool = True
    stat_buffer_size: int = Field(32, ge=1)
    stat_min_count: int = Field(16, ge=1)

    @field_validator("reward")
    @classmethod
    def _known_reward(cls, name: str) -> str:
        resolve_reward(name, "ddpo")
        return name


class DDPOObjective(Objective):
    """Policy gradient (PPO-clipped) on the denoising MDP with a registered reward."""

    name = "ddpo"
    requires = frozenset({"captions", "reward", "on_policy_samples"})
    options_model = DDPOOptions

    def __init__(self, backbone, **options: Any) -> None:
        super().__init__(backbone, **options)
        self.reward = resolve_reward(self.options.reward, self.name)
        self.tracker = PerPromptStatTracker(self.options.stat_buffer_size, self.options.stat_min_count)
        self.rounds: list[dict[str, float]] = []
        self.samples_used = 0
        self._queue: list[tuple[torch.Tensor, list[int]]] = []
        self._round: tuple[Trajectories, torch.Tensor] | None = None

    policy = "ddim"

    def start_round(self, prompts: list[str], denoiser: nn.Module, generator: torch.Generator) -> None:
        """Sample and score a round of trajectories, and queue its minibatches."""
        o, bb = self.options, self.backbone
        prompts = [p for p in prompts for _ in range(o.samples_per_prompt)]
        traj = sample_trajectories(bb, denoiser, prompts, num_steps=o.num_steps, eta=o.eta,
                                   guidance_scale=o.guidance_scale, generator=generator, policy=self.policy)
        with torch.no_grad():
            images = bb.decode(traj.latents[-1]).clamp(-1, 1)
        rewards = self.reward(images.float(), prompts).float()
        if o.per_prompt_stat_tracking:
            advantages = self.tracker.advantages(prompts, rewards)
        else:
            advantages = (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-6)
        advantages = advantages.clamp(-o.adv_clip_max, o.adv_clip_max).to(bb.device)
        self._round = (traj, advantages)
        self.samples_used += len(prompts)
        self.rounds.append({"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std(unbiased=False)),
                            "samples": self.samples_used})
        self._queue.extend(round_minibatches(len(prompts), o.minibatch_size, o.inner_epochs, traj.stochastic_steps(),
                                             o.timestep_fraction, generator))

    def state_dict(self) -> dict[str, Any]:
        """The round being trained (trajectories, advantages, queued minibatches), the per-prompt
        reward history and the round log."""
        state: dict[str, Any] = {"samples_used": self.samples_used, "rounds": self.rounds,
                                 "reward_history": {p: list(h) for p, h in self.tracker.history.items()}}
        if self._round is not None:
            traj, advantages = self._round
            state.update(round_state(traj, self._queue, {"advantages": advantages}))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: a resumed run finishes the saved round."""
        self.samples_used, self.rounds = int(state["samples_used"]), list(state["rounds"])
        self.tracker.history.clear()
        for prompt, rewards in state["reward_history"].items():
            self.tracker.history[prompt].extend(rewards)
        restored = round_from_state(state, ["advantages"], self.backbone.device)
        if restored is not None:
            traj, self._queue, tensors = restored
            self._round = (traj, tensors["advantages"].to(self.backbone.device))

    def conditioning(self, traj: Trajectories, index: torch.Tensor) -> tuple[Any, Any]:
        """Conditioning of trajectories ``index`` for re-scoring: ``(None, None)`` reuses what
        was recorded when sampling (TexForce re-encodes the prompts instead)."""
        return None, None

    def step_log_prob(self, denoiser: nn.Module, traj: Trajectories, step: int, index: torch.Tensor,
                      conditioning: tuple[Any, Any] | None = None) -> torch.Tensor:
        """The log-probability of a recorded step under the current policy."""
        cond, null = conditioning if conditioning is not None else self.conditioning(traj, index)
        return step_log_prob(self.backbone, denoiser, traj, step, index, cond=cond, null=null)

    def loss(self, batch: dict[str, Any], denoiser: nn.Module, generator: torch.Generator):
        if not self._queue:
            self.start_round(list(batch["caption"]), denoiser, generator)
        index, steps = self._queue.pop(0)
        traj, advantages = self._round
        adv = advantages[index]
        o = self.options
        losses, clipped = [], []
        conditioning = self.conditioning(traj, index)  # once per minibatch, shared by its steps
        for step in steps:
            log_prob = self.step_log_prob(denoiser, traj, step, index, conditioning)
            ratio = torch.exp(log_prob - traj.log_probs[step, index])
            unclipped = -adv * ratio
            clipped_loss = -adv * ratio.clamp(1 - o.clip_range, 1 + o.clip_range)
            losses.append(torch.maximum(unclipped, clipped_loss).mean())
            clipped.append(((ratio - 1).abs() > o.clip_range).float().mean())
        loss = torch.stack(losses).mean()
        return loss, {"loss": loss.detach(), "reward": self.rounds[-1]["reward_mean"],
                      "clip_fraction": torch.stack(clipped).mean().detach()}


class RLCMOptions(DDPOOptions):
    """Options of the ``rlcm`` objective: DDPO's, with a few-step default."""

    num_steps: int = Field(4, ge=1, le=8, description="sampler steps (RLCM targets 2-4)")


class RLCMObjective(DDPOObjective):
    """RLCM (Oertell et al. 2024): the same PPO-clipped policy gradient, where the policy is
    multistep consistency sampling: each of the 2–8 steps predicts x0 and re-noises it,
    ``x_{t'} ~ N(√ᾱ' x̂0, (1 − ᾱ') I)``; the final, deterministic step is not trained."""

    name = "rlcm"
    options_model = RLCMOptions
    policy = "consistency"
