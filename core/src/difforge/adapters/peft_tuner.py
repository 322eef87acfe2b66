"""The adapter protocol over PEFT's tuner layers: any PEFT method whose layers subclass
``BaseTunerLayer`` (LoRA, DoRA, LoHa, LoKr, OFT) is injected, scaled, merged, unmerged, saved
and loaded the same way. Subclasses only say which PEFT config they build."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel
from torch import Tensor, nn

from ..checkpointing import atomic_save_safetensors
from .base import AdapterType

#: PEFT's own file name for adapter weights
PEFT_WEIGHT_NAME = "adapter_model.safetensors"
CONFIG_METADATA_KEY = "peft_config"


def tuner_layers(model: nn.Module, adapter_name: str | None = None) -> list:
    """PEFT tuner layers of ``model`` (holding ``adapter_name``, when given)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if adapter_name is None:
        return layers
    return [layer for layer in layers if adapter_name in _layer_adapters(layer)]


def _layer_adapters(layer) -> set[str]:
    names: set[str] = set()
    for attr in layer.adapter_layer_names:
        names |= set(getattr(layer, attr, {}).keys())
    return names


def inject_peft(config, model: nn.Module, adapter_name: str) -> None:
    """``peft.inject_adapter_in_model`` for a named adapter, allowing several on one model."""
    from peft import inject_adapter_in_model

    with warnings.catch_warnings():
        # several named adapters on one model is the point of AdapterSet, not an accident
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        inject_adapter_in_model(config, model, adapter_name=adapter_name)


def set_active(layer, adapter_names: list[str]) -> None:
    """``layer.set_adapter`` without its side effect on ``requires_grad`` (trainers own that)."""
    params = [p for attr in layer.adapter_layer_names for p in getattr(layer, attr).parameters()]
    flags = [p.requires_grad for p in params]
    layer.set_adapter(adapter_names)
    for p, flag in zip(params, flags, strict=True):
        p.requires_grad_(flag)


def json_default(value):
    """JSON for the sets and enums inside PEFT configs."""
    if isinstance(value, set):
        return sorted(value)
    return getattr(value, "value", str(value))


class PeftAdapter(AdapterType):
    """An adapter type backed by one PEFT tuner. Subclasses set ``options_model`` (a pydantic
    model with ``to_peft()``) and ``peft_type`` (PEFT's name, e.g. ``"LOHA"``)."""

    options_model: ClassVar[type[BaseModel]]
    peft_type: ClassVar[str]
    #: False for tuners whose update cannot be scaled continuously (OFT)
    scalable: ClassVar[bool] = True

    def inject(self, model: nn.Module, adapter_name: str, **options: Any) -> None:
        if adapter_name in getattr(model, "peft_config", {}):
            raise ValueError(f"model already has an adapter called {adapter_name!r}")
        opts = self.options_model(**options)
        active = self._active(model)
        inject_peft(self._peft_config(opts), model, adapter_name)
        self._after_inject(model, adapter_name, opts)
        self.activate(model, [*active, adapter_name], [1.0] * (len(active) + 1))

    def _peft_config(self, options: BaseModel):
        """The PEFT config for validated options."""
        return options.to_peft()

    def _after_inject(self, model: nn.Module, adapter_name: str, options: BaseModel) -> None:
        """Adjust a freshly injected adapter (e.g. freeze part of it)."""

    def _active(self, model: nn.Module) -> list[str]:
        layers = tuner_layers(model)
        mine = set(self.adapter_names(model))
        return [n for n in (layers[0].active_adapters if layers else []) if n in mine]

    def activate(self, model, adapter_names, weights) -> None:
        if len(adapter_names) != len(weights):
            raise ValueError("activate: one weight per adapter name is required")
        known = set(self.adapter_names(model))
        missing = [n for n in adapter_names if n not in known]
        if missing:
            raise ValueError(f"unknown adapter(s) {missing}; model has {sorted(known)}")
        if not self.scalable:
            bad = [n for n, w in zip(adapter_names, weights, strict=True) if w not in (0.0, 1.0)]
            if bad:
                raise ValueError(f"{self.name} adapters cannot be scaled: give {bad} weight 1 (on) or 0 (off)")
            adapter_names = [n for n, w in zip(adapter_names, weights, strict=True) if w == 1.0]
            weights = [1.0] * len(adapter_names)
        for layer in self._layers(model):
            present = _layer_adapters(layer)
            others = [n for n in layer.active_adapters if n not in known]  # other types sharing the layer
            set_active(layer, others + [n for n in adapter_names if n in present])
            if self.scalable:
                for name, weight in zip(adapter_names, weights, strict=True):
                    if name in present:
                        layer.set_scale(name, weight)

    def _layers(self, model: nn.Module) -> list:
        mine = set(self.adapter_names(model))
        return [layer for layer in tuner_layers(model) if _layer_adapters(layer) & mine]

    def set_enabled(self, model, enabled: bool) -> None:
        for layer in self._layers(model):
            layer.enable_adapters(enabled)

    def merge(self, model, adapter_names) -> None:
        for layer in self._layers(model):
            names = [n for n in adapter_names if n in _layer_adapters(layer)]
            if names:
                layer.merge(adapter_names=names)

    def unmerge(self, model) -> None:
        for layer in self._layers(model):
            while layer.merged:
                layer.unmerge()

    def adapter_names(self, model) -> list[str]:
        configs = getattr(model, "peft_config", {}) or {}
        return sorted(n for n, c in configs.items() if str(json_default(c.peft_type)) == self.peft_type
                      and self._owns(c))

    def _owns(self, config) -> bool:
        """Whether a PEFT config of this ``peft_type`` belongs to this adapter type."""
        return True

    def config(self, model, adapter_name: str):
        """The PEFT config of one adapter."""
        return model.peft_config[adapter_name]

    def trainable_parameters(self, model, adapter_name) -> list[nn.Parameter]:
        # PEFT's DoRA layers name ``lora_magnitude_vector`` twice in ``adapter_layer_names``
        params: dict[int, nn.Parameter] = {}
        for layer in tuner_layers(model, adapter_name):
            for attr in layer.adapter_layer_names:
                holder = getattr(layer, attr, {})
                if adapter_name in holder:
                    value = holder[adapter_name]
                    for p in [value] if isinstance(value, nn.Parameter) else value.parameters():
                        params.setdefault(id(p), p)
        return list(params.values())

    def state_dict(self, model, adapter_name) -> dict[str, Tensor]:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model, adapter_name=adapter_name)

    def load_state_dict(self, model, adapter_name, state) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"{len(unexpected)} keys do not match the model, e.g. {unexpected[0]}")

    def save(self, model, adapter_name, path) -> Path:
        """Write ``<path>/adapter_model.safetensors`` (PEFT keys, config in the metadata)."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict(model, adapter_name).items()}
        config = self.config(model, adapter_name).to_dict()
        metadata = {CONFIG_METADATA_KEY: json.dumps(config, default=json_default), "format": "pt",
                    "difforge_adapter_type": self.name}
        return atomic_save_safetensors(state, Path(path) / PEFT_WEIGHT_NAME, metadata=metadata)

    def load(self, model, path, adapter_name) -> None:
        """Load a file written by :meth:`save` (or a directory holding one)."""
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

        file = adapter_file(path, PEFT_WEIGHT_NAME)
        state, metadata = read_safetensors(file)
        if CONFIG_METADATA_KEY not in metadata:
            raise ValueError(f"{file}: no {CONFIG_METADATA_KEY!r} metadata; was it written by difforge?")
        raw = json.loads(metadata[CONFIG_METADATA_KEY])
        config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[raw["peft_type"]]
        known = set(config_cls.__dataclass_fields__) - {"peft_type"}
        config = config_cls(**{k: v for k, v in raw.items() if k in known})
        self._inject_loaded(config, model, adapter_name, state, file)

    def _inject_loaded(self, config, model, adapter_name, state, file) -> None:
        active = self._active(model)
        inject_peft(config, model, adapter_name)
        try:
            self.load_state_dict(model, adapter_name, state)
        except ValueError as err:
            raise ValueError(f"{file}: {err}") from None
        self.activate(model, [*active, adapter_name], [1.0] * (len(active) + 1))


def adapter_file(path: str | Path, weight_name: str) -> Path:
    """``path`` itself, or ``path/weight_name`` when ``path`` is a directory."""
    path = Path(path)
    return path / weight_name if path.is_dir() else path


def read_safetensors(file: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of an adapter file; a missing, damaged or non-finite file is a
    one-line :class:`~difforge.errors.WeightsError` naming it."""
    from ..weights import read_safetensors as read

    return read(file, what="adapter")


__all__ = ["PeftAdapter", "adapter_file", "inject_peft", "read_safetensors", "tuner_layers"]
