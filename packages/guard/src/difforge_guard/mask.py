"""FreezeAsGuard (Huang et al. 2024): choose which tensors of a pre-trained model to freeze so
that fine-tuning on a *protected* domain is hampered while fine-tuning on a *legal* domain is
not, and export that mask so ``difforge train`` (``train.freeze_mask``) respects it.

The mask is learned as in the authors' mask learner, by alternating a simulated user and the
model releaser over one fine-tuning trajectory. Per tensor a logit ``s`` gives a soft mask
``m = sigmoid(s)``; the model in use is ``theta = theta_ft + m * (theta_pre - theta_ft)``, so a
frozen tensor (``m = 1``) stays pre-trained.

* user steps fine-tune ``theta_ft`` (Adam) on batches of both domains; through ``theta`` each
  tensor's change acts only by its ``1 - m``: the fine-tuning a user could do under the mask;
* every ``user_steps`` a releaser step moves the logits down the gradient of
  ``-protected_loss + legal_weight * legal_loss`` at ``theta``: a tensor whose fine-tuned
  change helps the protected domain (and not the legal one) is pushed towards frozen; a
  penalty keeps the soft mask's parameter share near ``ratio``.

The exported mask freezes the highest-scoring tensors holding ``ratio`` of the denoiser's
parameters.
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

from difforge import load_backbone
from difforge.plugin_api import atomic_write, get_registry


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


class _Functional(nn.Module):
    """The denoiser evaluated with substituted parameters (the masked mix of pre-trained and tuned)."""

    def __init__(self, module: nn.Module, params: dict[str, Tensor]) -> None:
        super().__init__()
        self.module, self.params = module, params

    def forward(self, *args, **kwargs):
        return torch.func.functional_call(self.module, self.params, args, kwargs)


def _top_mass(scores: Tensor, sizes: Tensor, ratio: float) -> Tensor:
    """Indices of the highest-scoring tensors holding ``ratio`` of the parameters."""
    order = torch.argsort(scores, descending=True)
    within = torch.cumsum(sizes[order], 0) <= ratio * sizes.sum()
    within[0] = True
    return order[within]


def _require_grads(denoiser: nn.Module, on: bool) -> None:
    denoiser.zero_grad(set_to_none=True)
    for p in denoiser.parameters():
        p.requires_grad_(on)


@torch.enable_grad()
def learn_freeze_mask(backbone, protected: Iterator[dict[str, Any]], legal: Iterator[dict[str, Any]],
                      ratio: float = 0.3, steps: int = 30, user_steps: int = 5, user_lr: float = 1e-4,
                      mask_lr: float = 0.1, legal_weight: float = 1.0, sparsity_weight: float = 10.0,
                      seed: int = 0) -> FreezeMask:
    """Learn which ``ratio`` of the denoiser's tensors to freeze, over ``steps`` releaser steps
    (each after ``user_steps`` simulated fine-tuning steps). ``protected`` / ``legal`` yield
    training batches (``pixel_values``, ``caption``) of the two domains."""
    from difforge.plugin_api import DenoisingObjective

    if not 0 < ratio < 1:
        raise ValueError(f"freeze-as-guard: ratio must be in (0, 1), got {ratio}")
    denoiser = backbone.denoiser
    names = [n for n, _ in denoiser.named_parameters()]
    pretrained = {n: p.detach().clone() for n, p in denoiser.named_parameters()}
    tuned = {n: p.detach().clone().requires_grad_(True) for n, p in denoiser.named_parameters()}
    sizes = torch.tensor([float(pretrained[n].numel()) for n in names])
    objective = DenoisingObjective(backbone)
    generator = torch.Generator().manual_seed(seed)
    logits = torch.full((len(names),), float(torch.logit(torch.tensor(ratio))), requires_grad=True)
    mask_optimizer = torch.optim.Adam([logits], lr=mask_lr)
    user_optimizer = torch.optim.Adam(tuned.values(), lr=user_lr)
    _require_grads(denoiser, False)

    def loss_at(mask: Tensor, batch, tune: bool) -> Tensor:
        """The domain loss of ``theta = theta_ft + mask * (theta_pre - theta_ft)``: differentiable
        in ``theta_ft`` (``tune``, a user step) or in ``mask`` (a releaser step)."""
        params = {}
        for i, n in enumerate(names):
            ft = tuned[n] if tune else tuned[n].detach()
            params[n] = ft + mask[i] * (pretrained[n] - ft)
        return objective.per_sample_loss(batch, _Functional(denoiser, params), generator).mean()

    history = []
    for _ in range(steps):
        frozen_now = torch.sigmoid(logits.detach())
        for _ in range(user_steps):  # the user fine-tunes what the current mask leaves free
            user_optimizer.zero_grad()
            (loss_at(frozen_now, next(protected), True) + loss_at(frozen_now, next(legal), True)).backward()
            user_optimizer.step()
        soft = torch.sigmoid(logits)
        protected_loss = loss_at(soft, next(protected), False)
        legal_loss = loss_at(soft, next(legal), False)
        share = (soft * sizes).sum() / sizes.sum()
        outer = -protected_loss + legal_weight * legal_loss + sparsity_weight * (share - ratio) ** 2
        mask_optimizer.zero_grad()
        outer.backward()
        mask_optimizer.step()
        history.append({"protected_loss": protected_loss.item(), "legal_loss": legal_loss.item(),
                        "soft_share": share.item()})
    order = _top_mass(logits.detach(), sizes, ratio).tolist()
    return FreezeMask(frozen=sorted(names[i] for i in order), ratio=ratio,
                      scores={n: float(s) for n, s in zip(names, logits.detach(), strict=True)}, history=history)


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
                         legal: Iterator[dict[str, Any]], steps: int = 20, lr: float = 1e-4,
                         eval_batches: int = 4, seed: int = 123) -> dict[str, float]:
    """Each domain's denoising loss after ``steps`` Adam fine-tuning steps on it that the mask
    ``frozen`` allows (the pre-trained model restored between domains), on ``eval_batches``
    fresh batches with fixed noise: what the mask is for."""
    from difforge.plugin_api import DenoisingObjective

    denoiser = backbone.denoiser
    objective = DenoisingObjective(backbone)
    pretrained = {n: p.detach().clone() for n, p in denoiser.named_parameters()}
    unknown = sorted(set(frozen) - set(pretrained))
    if unknown:
        raise ValueError(f"freeze mask names {len(unknown)} tensors the model lacks, e.g. {unknown[0]}")
    frozen_set = set(frozen)
    results = {}
    for key, data in (("protected_loss", protected), ("legal_loss", legal)):
        generator = torch.Generator().manual_seed(seed)
        trainable = [p for n, p in denoiser.named_parameters() if n not in frozen_set]
        _require_grads(denoiser, False)
        for p in trainable:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(trainable, lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                optimizer.zero_grad()
                objective.per_sample_loss(next(data), denoiser, generator).mean().backward()
                optimizer.step()
        fixed = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            results[key] = sum(objective.per_sample_loss(next(data), denoiser, fixed).mean().item()
                               for _ in range(eval_batches)) / eval_batches
            for n, p in denoiser.named_parameters():
                p.copy_(pretrained[n])
    _require_grads(denoiser, False)
    return results


def freeze_guard(model: str | Path, protected: str | Path, legal: str | Path, out: str | Path | None = None,
                 ratio: float = 0.3, steps: int = 30, user_steps: int = 5, protected_caption: str | None = None,
                 legal_caption: str | None = None, resolution: int = 32, batch_size: int = 4, seed: int = 0):
    """Learn a FreezeAsGuard mask for ``model`` from two image folders (what ``difforge
    freeze-guard`` runs); writes it to ``out`` when given and returns the :class:`FreezeMask`."""
    backbone = load_backbone(model)
    dataset_cls = get_registry("datasets").get("image-folder")

    def batches(folder, caption, offset):
        dataset = dataset_cls(path=str(folder), resolution=resolution, caption=caption)
        g = torch.Generator().manual_seed(seed + offset)
        while True:
            idx = torch.randint(0, len(dataset), (batch_size,), generator=g).tolist()
            items = [dataset[i] for i in idx]
            yield {"pixel_values": torch.stack([it["pixel_values"] for it in items]),
                   "caption": [it["caption"] for it in items]}

    mask = learn_freeze_mask(backbone, batches(protected, protected_caption, 0), batches(legal, legal_caption, 1),
                             ratio=ratio, steps=steps, user_steps=user_steps, seed=seed)
    if out is not None:
        mask.save(out)
    return mask
