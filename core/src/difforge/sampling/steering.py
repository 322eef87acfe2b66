"""What an inference-time steering method returns (see ``difforge_register_steering``)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Steered:
    """Samples chosen by a steering method: ``samples`` decoded in [-1, 1], one per prompt (or
    per requested unconditional sample); ``rewards`` ``(N,)`` their scores by the steering reward;
    ``nfe`` the denoiser evaluations spent per returned sample (a guided evaluation, conditional
    and unconditional halves together, counts once), the cost to match a baseline on."""

    samples: Tensor
    rewards: Tensor
    nfe: int
