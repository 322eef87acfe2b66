"""D3PO (Yang et al. 2024): DPO on denoising trajectories, with pairwise preference labels and
no reward model.

Each round samples pairs of trajectories with stochastic DDIM (the denoising chain as a
policy, as in DDPO); the two trajectories of a pair share their prompt and their initial state
x_T, so they differ only by the actions taken, as in the paper's derivation. A labeller says
which final image is preferred, and every denoising step is treated as a DPO decision:

    L = −log σ(β [log π_θ(a^w_t|s^w_t)/π_ref(a^w_t|s^w_t) − log π_θ(a^l_t|s^l_t)/π_ref(a^l_t|s^l_t)])

``ratio_clip`` optionally clamps each ratio π_θ/π_ref to [1 − ε, 1 + ε] first, as the
authors' code does (a trust region: a step whose ratio left it gives no gradient).

with π_ref the frozen base (the adapters disabled). The labeller here compares two images
with a registered reward and keeps only the *label* (which is better), as the paper's
experiments do with the relative scale of an objective; ties are dropped.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
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
from .rewards import resolve_reward


class D3POOptions(BaseModel):
    """Options of the ``d3po`` objective."""

    model_config = ConfigDict(extra="forbid")

    labeller: str = Field(description="a registered reward, used only to say which of two images is preferred")
    beta: float = Field(10.0, gt=0, description="DPO's β on the per-dimension mean log-probabilities")
    num_steps: int = Field(10, ge=1)
    eta: float = Field(1.0, gt=0)
    guidance_scale: float = Field(4.0, ge=1)
    pairs_per_prompt: int = Field(2, ge=1)
    minibatch_size: int | None = Field(None, ge=1, description="pairs per optimizer step (default: the round)")
    inner_epochs: int = Field(1, ge=1, description="passes over each round's pairs")
    timestep_fraction: float = Field(1.0, gt=0, le=1)
    shared_initial_noise: bool = Field(True, description="the two trajectories of a pair start from the same x_T")
    ratio_clip: float | None = Field(None, gt=0, lt=1,
                                     description="clamp π_θ/π_ref to [1 − ε, 1 + ε] (the authors' code)")

    @field_validator("labeller")
    @classmethod
    def _known_labeller(cls, name: str) -> str:
        resolve_reward(name, "d3po")
        return name


class D3POObjective(Objective):
    """Step-wise DPO over pairs of sampled denoising trajectories."""

    name = "d3po"
    requires = frozenset({"captions", "reference_model", "on_policy_samples"})
    options_model = D3POOptions

    def __init__(self, backbone, **options: Any) -> None:
        super().__init__(backbone, **options)
        self.labeller = resolve_reward(self.options.labeller, self.name)
        self.samples_used = 0
        self.rounds: list[dict[str, float]] = []
        self._queue: list[tuple[torch.Tensor, list[int]]] = []
        self._round: tuple[Trajectories, torch.Tensor, torch.Tensor] | None = None

    def setup(self, context) -> None:
        """The frozen reference: the adapters disabled (or a frozen copy)."""
        self.reference = context.reference_model()

    def start_round(self, prompts: list[str], denoiser: nn.Module, generator: torch.Generator) -> None:
        """Sample two trajectories per prompt and pair, label each pair, queue minibatches of pairs."""
        o, bb = self.options, self.backbone
        prompts = [p for p in prompts for _ in range(o.pairs_per_prompt) for _ in range(2)]
        initial = None
        if o.shared_initial_noise:  # entries 2i and 2i + 1 form pair i
            initial = torch.randn((len(prompts) // 2, *bb.sample_shape()), generator=generator).repeat_interleave(2, 0)
        traj = sample_trajectories(bb, denoiser, prompts, num_steps=o.num_steps, eta=o.eta,
                                   guidance_scale=o.guidance_scale, generator=generator, initial=initial)
        with torch.no_grad():
            scores = self.labeller(bb.decode(traj.latents[-1]).clamp(-1, 1).float(), prompts).float()
        first, second = torch.arange(0, len(prompts), 2), torch.arange(1, len(prompts), 2)
        keep = scores[first] != scores[second]
        better_first = scores[first] > scores[second]
        winners = torch.where(better_first, first, second)[keep]
        losers = torch.where(better_first, second, first)[keep]
        self.samples_used += len(prompts)
        self.rounds.append({"labelled_pairs": int(keep.sum()), "reward_mean": float(scores.mean()),
                            "samples": self.samples_used})
        self._round = (traj, winners, losers)
        if len(winners) == 0:
            return
        self._queue.extend(round_minibatches(len(winners), o.minibatch_size, o.inner_epochs, traj.stochastic_steps(),
                                             o.timestep_fraction, generator))

    def state_dict(self) -> dict[str, Any]:
        """The round being trained (trajectories, labelled pairs, queued minibatches) and the round log."""
        state: dict[str, Any] = {"samples_used": self.samples_used, "rounds": self.rounds}
        if self._round is not None:
            traj, winners, losers = self._round
            state.update(round_state(traj, self._queue, {"winners": winners, "losers": losers}))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: a resumed run finishes the saved round."""
        self.samples_used, self.rounds = int(state["samples_used"]), list(state["rounds"])
        restored = round_from_state(state, ["winners", "losers"], self.backbone.device)
        if restored is not None:
            traj, self._queue, tensors = restored
            self._round = (traj, tensors["winners"], tensors["losers"])

    def loss(self, batch: dict[str, Any], denoiser: nn.Module, generator: torch.Generator):
        if not hasattr(self, "reference"):
            raise RuntimeError("d3po: setup() was not called (the Trainer calls it)")
        while not self._queue:
            self.start_round(list(batch["caption"]), denoiser, generator)
        pick, steps = self._queue.pop(0)
        traj, winners, losers = self._round
        chosen, rejected = winners[pick], losers[pick]
        both = torch.cat([chosen, rejected])
        losses, accuracy, margin = [], [], []
        for step in steps:
            log_prob = step_log_prob(self.backbone, denoiser, traj, step, both)
            with self.reference.active() as reference:
                ref_log_prob = step_log_prob(self.backbone, reference, traj, step, both)
            ratio = log_prob - ref_log_prob
            if self.options.ratio_clip is not None:
                eps = self.options.ratio_clip
                ratio = ratio.clamp(math.log(1 - eps), math.log(1 + eps))
            inside = self.options.beta * (ratio[: len(chosen)] - ratio[len(chosen):])
            losses.append(-F.logsigmoid(inside).mean())
            accuracy.append((inside > 0).float().mean())
            margin.append(inside.detach().abs().mean())
        loss = torch.stack(losses).mean()
        return loss, {"loss": loss.detach(), "implicit_accuracy": torch.stack(accuracy).mean().detach(),
                      "margin": torch.stack(margin).mean(),  # mean |β Δ|: ≫ 1 means the sigmoid saturates
                      "reward": self.rounds[-1]["reward_mean"]}
