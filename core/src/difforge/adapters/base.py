"""The adapter protocol every adapter type implements, PEFT-style.

An :class:`AdapterType` knows how to inject named adapters of its kind into a model and how
to scale, enable, merge, unmerge, save and load them. Composition (several named adapters,
each with a weight) is driven through :class:`difforge.adapters.AdapterSet`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn


class AdapterType(ABC):
    """One kind of adapter (LoRA, ...). Stateless: all state lives in the model's layers."""

    #: registry name
    name: str = ""

    @abstractmethod
    def inject(self, model: nn.Module, adapter_name: str, **options: Any) -> None:
        """Add a new, trainable adapter called ``adapter_name`` to ``model``."""

    @abstractmethod
    def activate(self, model: nn.Module, adapter_names: Sequence[str], weights: Sequence[float]) -> None:
        """Make exactly ``adapter_names`` active, each scaled by its weight."""

    @abstractmethod
    def set_enabled(self, model: nn.Module, enabled: bool) -> None:
        """Turn all adapters of this type on or off (off gives the base model's outputs)."""

    @abstractmethod
    def merge(self, model: nn.Module, adapter_names: Sequence[str]) -> None:
        """Fold the adapters into the base weights (at their current scales)."""

    @abstractmethod
    def unmerge(self, model: nn.Module) -> None:
        """Undo every merge, restoring the base weights."""

    @abstractmethod
    def state_dict(self, model: nn.Module, adapter_name: str) -> dict[str, Tensor]:
        """The adapter's own tensors (no base weights)."""

    @abstractmethod
    def save(self, model: nn.Module, adapter_name: str, path: str | Path) -> Path:
        """Write the adapter as safetensors (atomically); returns the file written."""

    @abstractmethod
    def load(self, model: nn.Module, path: str | Path, adapter_name: str) -> None:
        """Inject an adapter and fill it from a file written by :meth:`save`."""

    @abstractmethod
    def adapter_names(self, model: nn.Module) -> list[str]:
        """Names of the adapters of this type present in ``model``."""

    @abstractmethod
    def trainable_parameters(self, model: nn.Module, adapter_name: str) -> list[nn.Parameter]:
        """The parameters that training this adapter updates."""

    def num_trainable(self, model: nn.Module, adapter_name: str) -> int:
        """Number of trainable scalars of one adapter."""
        return sum(p.numel() for p in self.trainable_parameters(model, adapter_name))

    # -- optional hooks ------------------------------------------------------------------------
    #: whether :meth:`merge` can fold this adapter into the base weights
    mergeable: bool = True

    #: per-call inputs the adapter reads (e.g. ``ip_adapter_image_embeds``); they come in the
    #: ``extra`` mapping of :meth:`difforge.Backbone.predict` / ``sample`` or as batch keys
    input_names: ClassVar[frozenset[str]] = frozenset()

    def bind_inputs(self, model: nn.Module, adapter_name: str, inputs: Mapping[str, Any] | None) -> None:  # noqa: B027
        """Hand one adapter its per-call inputs right before a forward pass, and ``None`` right
        after it (see :func:`difforge.adapters.inputs.adapter_inputs`)."""

    def null_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The unconditional counterparts of ``inputs`` for classifier-free guidance; an input
        left out is repeated unchanged in the unconditional half."""
        return {}

    @abstractmethod
    def load_state_dict(self, model: nn.Module, adapter_name: str, state: dict[str, Tensor]) -> None:
        """Restore the tensors :meth:`state_dict` returned (used by load and exact resume)."""

    def regularization(self, model: nn.Module, adapter_name: str) -> Tensor | None:
        """A penalty the trainer adds to the loss (e.g. SaRA's nuclear norm); None for none."""
        return None

    def on_step_end(self, model: nn.Module, adapter_name: str, step: int, total_steps: int) -> list[nn.Parameter]:
        """Called after each optimizer step; returns parameters whose optimizer state must be
        reset because the adapter re-purposed them (e.g. SaRA's progressive re-selection)."""
        return []
