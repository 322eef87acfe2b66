"""Adapters: one protocol (:class:`AdapterType`), one registry, and :class:`AdapterSet` to
stack several named adapters on a model with per-adapter weights."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from .base import AdapterType
from .lora import LoraAdapter, LoraOptions

BUILTIN_ADAPTERS: dict[str, AdapterType] = {"lora": LoraAdapter()}


class AdapterSet:
    """The named adapters attached to one model, each with its type and weight."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.types: dict[str, AdapterType] = {}
        self.weights: dict[str, float] = {}

    @staticmethod
    def _type(kind: str | AdapterType) -> AdapterType:
        if isinstance(kind, AdapterType):
            return kind
        from ..plugins import get_registry

        return get_registry("adapters").get(kind)

    def add(self, kind: str | AdapterType, name: str = "default", weight: float = 1.0, **options: Any) -> AdapterType:
        """Inject a new adapter of type ``kind`` called ``name``."""
        adapter_type = self._type(kind)
        adapter_type.inject(self.model, name, **options)
        self.types[name], self.weights[name] = adapter_type, weight
        self._apply()
        return adapter_type

    def load(self, kind: str | AdapterType, path: str | Path, name: str = "default", weight: float = 1.0) -> None:
        """Load an adapter file written by :meth:`save` (or by diffusers) as ``name``."""
        adapter_type = self._type(kind)
        adapter_type.load(self.model, path, name)
        self.types[name], self.weights[name] = adapter_type, weight
        self._apply()

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Set per-adapter weights; adapters not named keep theirs; weight 0 keeps it loaded but inert."""
        unknown = set(weights) - set(self.types)
        if unknown:
            raise ValueError(f"unknown adapter(s) {sorted(unknown)}; have {sorted(self.types)}")
        self.weights.update(weights)
        self._apply()

    def _apply(self) -> None:
        for adapter_type in {id(t): t for t in self.types.values()}.values():
            names = [n for n, t in self.types.items() if t is adapter_type]
            adapter_type.activate(self.model, names, [self.weights[n] for n in names])

    def enable(self) -> None:
        """Re-enable every adapter."""
        for t in set(self.types.values()):
            t.set_enabled(self.model, True)

    def disable(self) -> None:
        """Disable every adapter: the model computes exactly its base function."""
        for t in set(self.types.values()):
            t.set_enabled(self.model, False)

    def merge(self, names: list[str] | None = None) -> None:
        """Fold the named (default: all) adapters into the base weights at their weights."""
        names = names or list(self.types)
        for adapter_type in {id(self.types[n]): self.types[n] for n in names}.values():
            adapter_type.merge(self.model, [n for n in names if self.types[n] is adapter_type])

    def unmerge(self) -> None:
        """Restore the base weights after :meth:`merge`."""
        for t in set(self.types.values()):
            t.unmerge(self.model)

    def save(self, name: str, path: str | Path) -> Path:
        """Save one adapter (safetensors, atomically)."""
        return self.types[name].save(self.model, name, path)

    def trainable_parameters(self, name: str) -> list[nn.Parameter]:
        """Parameters of adapter ``name``."""
        return self.types[name].trainable_parameters(self.model, name)

    def num_trainable(self, name: str) -> int:
        """Trainable scalars of adapter ``name``."""
        return self.types[name].num_trainable(self.model, name)


__all__ = ["AdapterSet", "AdapterType", "BUILTIN_ADAPTERS", "LoraAdapter", "LoraOptions"]
