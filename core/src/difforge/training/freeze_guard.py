"""FreezeAsGuard (Huang et al. 2024): choose which tensors of a pre-trained model to freeze so
that fine-tuning on a *protected* domain is hampered while fine-tuning on a *legal* domain is
not, and export that mask so ``difforge train`` (``train.freeze_mask``) respects it.

The mask is learned by the paper's bilevel scheme, unrolled one step: per tensor a logit
``s``; the freezing mask ``m = top-k(sigmoid(s))`` (straight-through to the soft values) sets
which tensors a simulated fine-tuning step ``theta - lr (1 - m) sign(grad)`` (the size of an
Adam step, ``lr`` standing for a whole short fine-tuning run) may move; the outer loss
rewards a high protected-domain loss and a low legal-domain loss after that step, on fresh
batches. The frozen tensors hold ``ratio`` of the denoiser's parameters.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpointing import atomic_write


@dataclass
class FreezeMask:
    """Tensor names to keep frozen, with how they were chosen."""

    frozen: list[str]
    ratio: float
    scores: dict[str, float]
    history: list[dict[str, float]]

    def save(self, path: str | Path) -> Path:
        """Write the mask as JSON (atomically)."""
        path = Path(path)
        payload = {"method": "freeze-as-guard", "frozen": self.frozen, "ratio": self.ratio,
                   "scores": self.scores, "history": self.history}
        atomic_write(path, lambda p: p.write_text(json.dumps(payload, indent=2)))
        return path


def load_freeze_mask(path: str | Path) -> list[str]:
    """The frozen tensor names of a mask file, with a one-line error for a bad file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        frozen = data["frozen"]
    except FileNotFoundError:
        raise FileNotFoundError(f"train.freeze_mask: no file {path}") from None
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"train.freeze_mask: {path} is not a FreezeAsGuard mask (no 'frozen' list)") from None
    if not isinstance(frozen, list) or not all(isinstance(n, str) for n in frozen):
        raise ValueError(f"train.freeze_mask: {path}: 'frozen' must be a list of tensor names")
    return frozen


class _Functional(nn.Module):
    """The denoiser evaluated with substituted parameters (for the unrolled fine-tuning step)."""

    def __init__(self, module: nn.Module, params: dict[str, Tensor]) -> None:
        super().__init__()
        self.module, self.params = module, params

    def forward(self, *args, **kwargs):
        return torch.func.functional_call(self.module, self.params, args, kwargs)


def learn_freeze_mask(backbone, protected: Iterator[dict[str, Any]], legal: Iterator[dict[str, Any]],
                      ratio: float = 0.3, steps: int = 30, inner_lr: float = 5e-3, mask_lr: float = 0.1,
                      legal_weight: float = 1.0, seed: int = 0) -> FreezeMask:
    """Learn which ``ratio`` of the denoiser's tensors to freeze. ``protected`` / ``legal``
    yield training batches (``pixel_values``, ``caption``) of the two domains."""
    from .objectives import DenoisingObjective

    if not 0 < ratio < 1:
        raise ValueError(f"freeze-as-guard: ratio must be in (0, 1), got {ratio}")
    denoiser = backbone.denoiser
    names = [n for n, p in denoiser.named_parameters()]
    theta = {n: p.detach() for n, p in denoiser.named_parameters()}
    objective = DenoisingObjective(backbone)
    generator = torch.Generator().manual_seed(seed)
    logits = torch.zeros(len(names), requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=mask_lr)
    sizes = torch.tensor([float(theta[n].numel()) for n in names])
    history = []

    def top_mass(scores: Tensor) -> Tensor:
        """Indices of the highest-scoring tensors holding ``ratio`` of the parameters."""
        order = torch.argsort(scores, descending=True)
        within = torch.cumsum(sizes[order], 0) <= ratio * sizes.sum()
        within[0] = True
        return order[within]

    def grads(batch) -> dict[str, Tensor]:
        denoiser.zero_grad(set_to_none=True)
        with torch.enable_grad():
            for p in denoiser.parameters():
                p.requires_grad_(True)
            objective.per_sample_loss(batch, denoiser, generator).mean().backward()
        return {n: p.grad.detach().clone() for n, p in denoiser.named_parameters()}

    def loss_after_step(g: dict[str, Tensor], mask: Tensor, batch) -> Tensor:
        # the simulated fine-tuning moves like Adam does: by inner_lr per entry, along -sign(grad)
        params = {n: theta[n] - inner_lr * (1 - mask[i]) * g[n].sign() for i, n in enumerate(names)}
        return objective.per_sample_loss(batch, _Functional(denoiser, params), generator).mean()

    for _ in range(steps):
        soft = torch.sigmoid(logits)
        hard = torch.zeros_like(soft).scatter(0, top_mass(soft.detach()), 1.0)
        mask = hard + soft - soft.detach()  # straight-through
        g_protected, g_legal = grads(next(protected)), grads(next(legal))
        protected_loss = loss_after_step(g_protected, mask, next(protected))
        legal_loss = loss_after_step(g_legal, mask, next(legal))
        outer = -protected_loss + legal_weight * legal_loss
        optimizer.zero_grad()
        outer.backward()
        optimizer.step()
        history.append({"protected_loss": protected_loss.item(), "legal_loss": legal_loss.item()})
    denoiser.zero_grad(set_to_none=True)
    for p in denoiser.parameters():
        p.requires_grad_(False)
    order = top_mass(logits.detach()).tolist()
    return FreezeMask(frozen=sorted(names[i] for i in order), ratio=ratio,
                      scores={n: float(s) for n, s in zip(names, logits.detach())}, history=history)


def random_freeze_mask(sizes: dict[str, int], share: float, seed: int) -> list[str]:
    """The baseline FreezeAsGuard is compared with: tensors (``name -> numel``) drawn at random
    until ``share`` of the parameters are frozen."""
    rng, frozen, total = random.Random(seed), [], 0
    for name in rng.sample(list(sizes), len(sizes)):
        if total + sizes[name] <= share * sum(sizes.values()):
            frozen.append(name)
            total += sizes[name]
    return frozen


def evaluate_freeze_mask(backbone, frozen: list[str], protected: Iterator[dict[str, Any]],
                         legal: Iterator[dict[str, Any]], inner_lr: float = 5e-3, rounds: int = 4,
                         seed: int = 123) -> dict[str, float]:
    """Protected- and legal-domain losses after the simulated fine-tuning step that the mask
    ``frozen`` allows (the quantity :func:`learn_freeze_mask` optimises), averaged over ``rounds``."""
    from .objectives import DenoisingObjective

    denoiser = backbone.denoiser
    objective = DenoisingObjective(backbone)
    theta = {n: p.detach() for n, p in denoiser.named_parameters()}
    unknown = sorted(set(frozen) - set(theta))
    if unknown:
        raise ValueError(f"freeze mask names {len(unknown)} tensors the model lacks, e.g. {unknown[0]}")
    frozen_set = set(frozen)
    totals = {"protected_loss": 0.0, "legal_loss": 0.0}
    for r in range(rounds):
        for key, data in (("protected_loss", protected), ("legal_loss", legal)):
            generator = torch.Generator().manual_seed(seed + r)
            denoiser.zero_grad(set_to_none=True)
            for p in denoiser.parameters():
                p.requires_grad_(True)
            with torch.enable_grad():
                objective.per_sample_loss(next(data), denoiser, generator).mean().backward()
            params = {n: theta[n] if n in frozen_set else theta[n] - inner_lr * p.grad.sign()
                      for n, p in denoiser.named_parameters()}
            with torch.no_grad():
                loss = objective.per_sample_loss(next(data), _Functional(denoiser, params), generator).mean()
            totals[key] += loss.item() / rounds
    denoiser.zero_grad(set_to_none=True)
    for p in denoiser.parameters():
        p.requires_grad_(False)
    return totals
