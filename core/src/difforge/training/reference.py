"""The frozen reference model of preference optimisation.

With an adapter, the reference is the same model with its adapters disabled, so no second
copy of the weights is kept. Without one (full fine-tuning), a frozen copy of the denoiser is
the only option; it costs one model's memory.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn


class ReferenceModel:
    """Gives ``predict``-ready access to the base model of a run: ``backbone`` with its trained
    ``adapters`` (an :class:`~difforge.adapters.AdapterSet`, or ``None`` under full fine-tuning)."""

    def __init__(self, backbone, adapters=None) -> None:
        self.backbone = backbone
        self.adapters = adapters
        self._copy: nn.Module | None = None
        if self.adapters is None:
            self._copy = copy.deepcopy(backbone.denoiser).requires_grad_(False).eval()

    @property
    def keeps_a_copy(self) -> bool:
        """Whether a second copy of the denoiser is held (full fine-tuning only)."""
        return self._copy is not None

    @contextmanager
    def active(self):
        """Inside: the denoiser that computes the reference function, under ``no_grad``."""
        with torch.no_grad():
            if self._copy is not None:
                yield self._copy
            else:
                with self.adapters.disabled():
                    yield self.backbone.denoiser
