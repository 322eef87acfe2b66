"""What the particle methods share: K candidates per output sample laid out group by group, the
reward of a clean-sample estimate, importance weights and resampling within each group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import ValidationError
from torch import Tensor

from difforge.plugin_api import UsageError


class Particles:
    """``groups`` output samples with ``k`` candidates each, rows ordered group by group (the
    candidates of output sample ``g`` are rows ``g*k .. g*k + k - 1``); ``prompts`` repeats each
    prompt ``k`` times in that order (``None`` for an unconditional model)."""

    @classmethod
    def of(cls, backbone, method: str, prompts: Sequence[str] | None, num_samples: int, k: int) -> Particles:
        """The particles of ``method`` on ``backbone``: text-conditioned (one group per prompt) or
        unconditional (``num_samples`` groups); other conditionings are refused in one line."""
        kind = backbone.conditioning
        if kind not in ("text", "none"):
            raise UsageError(f"steering {method!r}: steers text-conditioned and unconditional models; this "
                             f"model is {kind}-conditioned")
        if kind == "text" and not prompts:
            raise UsageError(f"steering {method!r}: the model is text-conditioned; give prompts")
        return cls(prompts if kind == "text" else None, num_samples, k)

    def __init__(self, prompts: Sequence[str] | None, num_samples: int, k: int) -> None:
        self.groups = len(prompts) if prompts else num_samples
        self.k = k
        self.prompts = [p for p in prompts for _ in range(k)] if prompts else None
        self.group_prompts = list(prompts) if prompts else None

    @property
    def rows(self) -> int:
        """Candidates in all: ``groups * k``."""
        return self.groups * self.k

    def grouped(self, values: Tensor) -> Tensor:
        """``(groups * k, ...)`` -> ``(groups, k, ...)``."""
        return values.reshape(self.groups, self.k, *values.shape[1:])

    def rows_of(self, within: Tensor) -> Tensor:
        """Per-group candidate indices ``(groups, m)`` -> row indices ``(groups * m,)``."""
        offsets = torch.arange(self.groups, device=within.device)[:, None] * self.k
        return (within + offsets).reshape(-1)


def x0_reward(backbone, reward, prompts: Sequence[str] | None):
    """``value(x0, rows=None) -> scores``: the reward of the decoded clean-sample estimates
    ``x0`` (denoiser space), scored against the prompts of their rows; the intermediate reward
    of FK steering and the value of SVDD's posterior-mean variant."""

    def value(x0: Tensor, rows: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            images = backbone.decode(x0).clamp(-1, 1).float()
        chosen = prompts if prompts is None or rows is None else [prompts[i] for i in rows.tolist()]
        return reward(images, chosen).float().to(x0.device)

    return value


def effective_sample_size(log_weights: Tensor) -> Tensor:
    """``(sum w)^2 / sum w^2`` along the last axis, from unnormalised log-weights: ``k`` for
    uniform weights, 1 when one particle holds all the mass (Kong 1992)."""
    w = torch.softmax(log_weights.double(), dim=-1)
    return (1.0 / (w**2).sum(-1)).to(log_weights.dtype)


def resample(log_weights: Tensor, generator: torch.Generator,
             scheme: Literal["multinomial", "systematic"] = "multinomial") -> Tensor:
    """Ancestor indices ``(groups, k)`` drawn within each group in proportion to
    ``softmax(log_weights)`` (``(groups, k)``): independent draws (multinomial) or one uniform
    offset per group and ``k`` evenly spaced points (systematic, lower variance; Kitagawa 1996)."""
    groups, k = log_weights.shape
    w = torch.softmax(log_weights.double(), dim=-1).cpu()
    if scheme == "multinomial":
        return torch.multinomial(w, k, replacement=True, generator=generator).to(log_weights.device)
    points = (torch.rand(groups, 1, generator=generator, dtype=torch.float64) + torch.arange(k)) / k
    cumulative = w.cumsum(-1)
    cumulative[:, -1] = 1.0
    return torch.searchsorted(cumulative, points).clamp_max(k - 1).to(log_weights.device)


def steering_generator(generator: torch.Generator | None) -> torch.Generator:
    """The generator of a method's own draws (resampling, selection), seeded from the sampling
    generator's seed but separate from it, so that the proposal's noise stream is the one plain
    sampling with the same seed draws."""
    seed = generator.initial_seed() if generator is not None else 0
    return torch.Generator().manual_seed((seed * 6364136223846793005 + 1442695040888963407) % 2**63)


def parse_options(options_class, method: str, options: dict):
    """``options_class(**options)``, or one line naming the steering method and the bad fields."""
    try:
        return options_class(**options)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"steering {method!r}: {fields}") from None


def check_stochastic(backbone, method: str, sampler: str, eta: float) -> None:
    """Particle methods need a stochastic proposal: copies of a resampled particle must be able
    to diverge again."""
    if getattr(backbone.parameterization, "continuous", False):
        raise UsageError(f"steering {method!r}: this flow-matching model samples with a deterministic ODE; "
                         "particle steering needs a stochastic (ancestral) sampler")
    if sampler in ("euler", "flow_euler") or (sampler == "ddim" and eta == 0):
        raise UsageError(f"steering {method!r}: sampler {sampler!r} is deterministic, so resampled copies of a "
                         "particle would never diverge; use ddpm, consistency, or ddim with eta > 0")
