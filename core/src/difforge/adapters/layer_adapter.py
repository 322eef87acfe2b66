"""Base class of difforge's own adapter types: a set of :class:`~.tuned_layer.Tuner` s, one per
wrapped layer, behind the same protocol as the PEFT-backed types."""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from ..checkpointing import atomic_save_safetensors
from .base import AdapterType
from .peft_tuner import adapter_file, read_safetensors
from .tuned_layer import TunedLayer, Tuner, tuned_layers, wrap

WEIGHT_NAME = "difforge_adapter.safetensors"
OPTIONS_ATTR = "difforge_adapter_options"


class LayerAdapter(AdapterType):
    """An adapter type made of per-layer tuners. Subclasses set ``options_model`` and implement
    :meth:`build_tuners`; ``tuner_types`` lists the tuner classes they create."""

    options_model: ClassVar[type[BaseModel]]
    tuner_types: ClassVar[tuple[type[Tuner], ...]]

    @abstractmethod
    def build_tuners(self, model: nn.Module, options: BaseModel) -> dict[str, Tuner]:
        """A fresh tuner for each module to adapt, by module name."""

    # -- bookkeeping ------------------------------------------------------------------------
    def _layers(self, model: nn.Module, adapter_name: str | None = None) -> dict[str, TunedLayer]:
        return {
            name: layer for name, layer in tuned_layers(model).items()
            if any(isinstance(t, self.tuner_types) and (adapter_name is None or n == adapter_name)
                   for n, t in layer.tuners.items())
        }

    def adapter_names(self, model) -> list[str]:
        options = getattr(model, OPTIONS_ATTR, {})
        return sorted(n for n, (kind, _) in options.items() if kind == self.name)

    def set_on_tuners(self, model: nn.Module, adapter_name: str, **values: Any) -> None:
        """Set per-forward inputs (a condition map, image tokens) on every tuner of one adapter."""
        for layer in self._layers(model, adapter_name).values():
            for key, value in values.items():
                setattr(layer.tuners[adapter_name], key, value)

    def options(self, model: nn.Module, adapter_name: str) -> BaseModel:
        """The validated options the adapter was created with."""
        return getattr(model, OPTIONS_ATTR)[adapter_name][1]

    # -- protocol ---------------------------------------------------------------------------
    def inject(self, model, adapter_name, **options: Any) -> None:
        registry = getattr(model, OPTIONS_ATTR, None)
        if registry is None:
            registry = {}
            setattr(model, OPTIONS_ATTR, registry)
        if adapter_name in registry:
            raise ValueError(f"model already has an adapter called {adapter_name!r}")
        opts = self.options_model(**options)
        tuners = self.build_tuners(model, opts)
        if not tuners:
            raise ValueError(f"{self.name}: no module of {type(model).__name__} matches the options {options}")
        device = next(model.parameters()).device
        for module_name, tuner in tuners.items():
            layer = wrap(model, module_name)
            layer.tuners[adapter_name] = tuner.to(device)
            layer.scales[adapter_name] = 1.0
            layer.active.append(adapter_name)
        registry[adapter_name] = (self.name, opts)

    def activate(self, model, adapter_names, weights) -> None:
        if len(adapter_names) != len(weights):
            raise ValueError("activate: one weight per adapter name is required")
        mine = set(self.adapter_names(model))
        missing = [n for n in adapter_names if n not in mine]
        if missing:
            raise ValueError(f"unknown adapter(s) {missing}; model has {sorted(mine)}")
        for layer in self._layers(model).values():
            layer.active = [n for n in layer.active if n not in mine] + [n for n in adapter_names if n in layer.tuners]
            for name, weight in zip(adapter_names, weights, strict=True):
                layer.scales[name] = float(weight)

    def set_enabled(self, model, enabled: bool) -> None:
        for layer in self._layers(model).values():
            layer.enabled = enabled

    def merge(self, model, adapter_names) -> None:
        if not self.mergeable:
            raise ValueError(f"{self.name} adapters add computation that cannot be folded into weights")
        for layer in self._layers(model).values():
            layer.merge([n for n in adapter_names if n in layer.active])

    def unmerge(self, model) -> None:
        for layer in self._layers(model).values():
            layer.unmerge()

    def trainable_parameters(self, model, adapter_name) -> list[nn.Parameter]:
        return [p for layer in self._layers(model, adapter_name).values()
                for p in layer.tuners[adapter_name].parameters()]

    def state_dict(self, model, adapter_name) -> dict[str, Tensor]:
        return {f"{module}.{key}": value for module, layer in self._layers(model, adapter_name).items()
                for key, value in layer.tuners[adapter_name].state_dict().items()}

    def load_state_dict(self, model, adapter_name, state) -> None:
        layers = self._layers(model, adapter_name)
        by_module: dict[str, dict[str, Tensor]] = {}
        for key, value in state.items():
            module = max((m for m in layers if key.startswith(m + ".")), key=len, default=None)
            if module is None:
                raise ValueError(f"adapter {adapter_name!r}: {key!r} names no adapted module of the model")
            by_module.setdefault(module, {})[key[len(module) + 1:]] = value
        for module, layer in layers.items():
            tuner = layer.tuners[adapter_name]
            own = tuner.state_dict()
            missing = set(own) - set(by_module.get(module, {}))
            if missing:
                raise ValueError(f"adapter {adapter_name!r}: no {sorted(missing)[0]!r} for module {module!r}")
            load_tuner_state(tuner, by_module[module])

    def save(self, model, adapter_name, path) -> Path:
        """Write ``<path>/difforge_adapter.safetensors`` (tensors + type and options as metadata)."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict(model, adapter_name).items()}
        metadata = {"difforge_adapter_type": self.name, "format": "pt",
                    "options": self.options(model, adapter_name).model_dump_json()}
        return atomic_save_safetensors(state, Path(path) / WEIGHT_NAME, metadata=metadata)

    def load(self, model, path, adapter_name) -> None:
        """Re-create the adapter from a file written by :meth:`save`."""
        file = adapter_file(path, WEIGHT_NAME)
        state, metadata = read_safetensors(file)
        kind = metadata.get("difforge_adapter_type")
        if kind != self.name:
            raise ValueError(f"{file}: holds a {kind!r} adapter, not {self.name!r}")
        self.inject(model, adapter_name, **json.loads(metadata["options"]))
        try:
            self.load_state_dict(model, adapter_name, state)
        except ValueError as err:
            raise ValueError(f"{file}: {err}") from None


def load_tuner_state(tuner: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy ``state`` into a tuner; buffers whose size changed in training (sparse index sets)
    are replaced rather than copied."""
    with torch.no_grad():
        for key, value in state.items():
            holder_name, _, attr = key.rpartition(".")
            holder = tuner.get_submodule(holder_name) if holder_name else tuner
            current = getattr(holder, attr)
            value = value.to(current.device, current.dtype)
            if current.shape == value.shape:
                current.copy_(value)
            elif attr in holder._buffers:
                holder._buffers[attr] = value.clone()
            else:
                raise ValueError(f"{key}: shape {tuple(value.shape)} does not match {tuple(current.shape)}")


def module_matches(name: str, patterns: Sequence[str]) -> bool:
    """PEFT's rule: a pattern matches a module whose name equals it or ends with ``.pattern``."""
    return any(name == p or name.endswith("." + p) for p in patterns)
