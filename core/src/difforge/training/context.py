"""What an objective sees of a run: :class:`TrainingContext`, handed to ``Objective.setup``.

Objectives get the parts they need (the backbone, the data, the adapters being trained, the
trained parameters, the step) and not the trainer, so the loop can change without breaking them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from ..adapters.composition import AdapterSet
    from ..backbone.backbone import Backbone
    from ..config import RunConfig


def single_process_barrier() -> None:
    """The barrier of a run with one process: nothing to wait for."""


@dataclass
class TrainingContext:
    """The run as an objective may use it.

    Attributes:
        backbone: the model being trained (its denoiser unwrapped).
        dataset: the training data.
        config: the validated run config (read it, do not change it).
        adapters: the :class:`~difforge.adapters.AdapterSet` of the trained adapter, or ``None``
            when whole modules train.
        trainable: the parameters the optimizer updates.
        is_main_process: whether this process writes shared files (class images, caches).
        wait_for_everyone: a barrier across processes (a no-op with one).
    """

    backbone: Backbone
    dataset: Any
    config: RunConfig
    adapters: AdapterSet | None
    trainable: list[nn.Parameter]
    is_main_process: bool = True
    wait_for_everyone: Callable[[], None] = single_process_barrier
    _step: Callable[[], int] = field(default=int, repr=False)

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (the step being computed is ``step + 1``)."""
        return self._step()

    @property
    def output_dir(self) -> Path:
        """The run's output directory."""
        return Path(self.config.output.dir)

    @property
    def seed(self) -> int:
        """The run's seed (``train.seed``): derive an objective's own generators from it."""
        return self.config.train.seed

    def reference_model(self):
        """The frozen reference of preference optimisation: the base model with the adapters
        disabled, or a frozen copy of the denoiser under full fine-tuning."""
        from .reference import ReferenceModel

        return ReferenceModel(self.backbone, self.adapters)
