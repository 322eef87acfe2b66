"""Reward bookkeeping shared by the RL objectives: resolving a registered reward and DDPO's
per-prompt advantage normalisation."""

from __future__ import annotations

from collections import defaultdict, deque

import torch
from torch import Tensor


def resolve_reward(name: str, objective: str, differentiable: bool = False):
    """The registered reward ``name``; a one-line error if it is unknown or, when
    ``differentiable`` is asked for, if it is not."""
    from difforge.plugin_api import RegistryError, get_registry

    registry = get_registry("rewards")
    try:
        reward = registry.get(name)
    except RegistryError as exc:
        raise ValueError(f"{objective}: {exc}") from None
    if differentiable and not reward.differentiable:
        known = [n for n in registry.names() if registry.get(n).differentiable]
        raise ValueError(f"{objective}: reward {name!r} is not differentiable; "
                         f"differentiable rewards: {', '.join(known)}")
    return reward


class PerPromptStatTracker:
    """Advantages ``(r - mean) / std`` with the statistics of the same prompt's recent rewards
    (a buffer of ``buffer_size``), falling back to the whole batch's until a prompt has
    ``min_count`` of them (DDPO, Black et al. 2023, §4.3)."""

    def __init__(self, buffer_size: int = 32, min_count: int = 16) -> None:
        self.buffer_size, self.min_count = buffer_size, min_count
        self.history: dict[str, deque] = defaultdict(lambda: deque(maxlen=self.buffer_size))

    def advantages(self, prompts: list[str], rewards: Tensor) -> Tensor:
        """Normalised advantages, one per sample."""
        rewards = rewards.float().cpu()
        out = torch.empty_like(rewards)
        for prompt in dict.fromkeys(prompts):
            mask = torch.tensor([p == prompt for p in prompts])
            self.history[prompt].extend(rewards[mask].tolist())
            pool = torch.tensor(list(self.history[prompt])) if len(self.history[prompt]) >= self.min_count else rewards
            out[mask] = (rewards[mask] - pool.mean()) / (pool.std(unbiased=False) + 1e-6)
        return out
