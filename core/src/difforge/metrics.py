"""Metrics over generated samples."""

from __future__ import annotations

import torch
from torch import Tensor


def pixel_statistics(samples: Tensor, **_: object) -> dict[str, float]:
    """Mean, standard deviation and per-sample diversity (mean pairwise L2) of samples in [-1, 1]."""
    flat = samples.detach().float().flatten(1)
    diversity = torch.pdist(flat).mean().item() if len(flat) > 1 else 0.0
    return {"mean": flat.mean().item(), "std": flat.std().item(), "diversity": diversity}

