"""LoRA on any ``nn.Module`` via PEFT's tuner layers (inject / scale / merge / unmerge)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ...checkpointing import atomic_save_safetensors
from ..base import AdapterType
from .config import LoraOptions

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
METADATA_KEY = "lora_adapter_metadata"


def _tuner_layers(model: nn.Module):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def diffusers_prefix(model: nn.Module) -> str:
    """The key prefix diffusers uses for this denoiser in LoRA files (``unet`` / ``transformer``)."""
    return "unet" if "UNet" in type(model).__name__ else "transformer"


class LoraAdapter(AdapterType):
    """LoRA / DoRA through PEFT. Files use diffusers' layout so ``load_lora_weights`` reads them."""

    name = "lora"
    options_model = LoraOptions

    def inject(self, model: nn.Module, adapter_name: str, **options: Any) -> None:
        if adapter_name in self.adapter_names(model):
            raise ValueError(f"model already has an adapter called {adapter_name!r}")
        config = LoraOptions(**options).to_peft()
        active = self._active(model)
        _inject(config, model, adapter_name)
        self.activate(model, [*active, adapter_name], [1.0] * (len(active) + 1))

    def _active(self, model: nn.Module) -> list[str]:
        layers = _tuner_layers(model)
        return list(layers[0].active_adapters) if layers else []

    def activate(self, model, adapter_names, weights) -> None:
        if len(adapter_names) != len(weights):
            raise ValueError("activate: one weight per adapter name is required")
        known = set(self.adapter_names(model))
        missing = [n for n in adapter_names if n not in known]
        if missing:
            raise ValueError(f"unknown adapter(s) {missing}; model has {sorted(known)}")
        for layer in _tuner_layers(model):
            present = [n for n in adapter_names if n in layer.lora_A]
            layer.set_adapter(present)
            for name, weight in zip(adapter_names, weights):
                if name in layer.lora_A:
                    layer.set_scale(name, weight)

    def set_enabled(self, model, enabled: bool) -> None:
        for layer in _tuner_layers(model):
            layer.enable_adapters(enabled)

    def merge(self, model, adapter_names) -> None:
        for layer in _tuner_layers(model):
            names = [n for n in adapter_names if n in layer.lora_A]
            if names:
                layer.merge(adapter_names=names)

    def unmerge(self, model) -> None:
        for layer in _tuner_layers(model):
            while layer.merged:
                layer.unmerge()

    def adapter_names(self, model) -> list[str]:
        return sorted(getattr(model, "peft_config", {}) or {})

    def config(self, model, adapter_name: str):
        """The ``peft.LoraConfig`` of one adapter."""
        return model.peft_config[adapter_name]

    def trainable_parameters(self, model, adapter_name) -> list[nn.Parameter]:
        marker = f".{adapter_name}."
        return [
            p
            for n, p in model.named_parameters()
            if marker in n and ("lora_" in n)
        ]

    def state_dict(self, model, adapter_name) -> dict[str, Tensor]:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model, adapter_name=adapter_name)

    def save(self, model, adapter_name, path) -> Path:
        """Write ``<path>/pytorch_lora_weights.safetensors`` in the diffusers LoRA layout."""
        prefix = diffusers_prefix(model)
        state = {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in self.state_dict(model, adapter_name).items()}
        config = self.config(model, adapter_name).to_dict()
        metadata = {
            METADATA_KEY: json.dumps({f"{prefix}.{k}": v for k, v in config.items()}, default=_json_default),
            "format": "pt",
        }
        return atomic_save_safetensors(state, Path(path) / WEIGHT_NAME, metadata=metadata)

    def load(self, model, path, adapter_name) -> None:
        """Load a diffusers-layout LoRA file (``.safetensors`` or a directory holding one)."""
        from peft import LoraConfig, set_peft_model_state_dict
        from safetensors import safe_open

        file = Path(path)
        if file.is_dir():
            file = file / WEIGHT_NAME
        if not file.exists():
            raise FileNotFoundError(f"no LoRA weights at {file}")
        with safe_open(str(file), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        prefix = diffusers_prefix(model) + "."
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if METADATA_KEY in metadata:
            raw = json.loads(metadata[METADATA_KEY])
            config_dict = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in raw.items()}
            known = set(LoraConfig.__dataclass_fields__)
            config = LoraConfig(**{k: v for k, v in config_dict.items() if k in known and k not in ("peft_type",)})
        else:
            config = _infer_config(state)
        active = self._active(model)
        _inject(config, model, adapter_name)
        result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"{file}: {len(unexpected)} keys do not match the model, e.g. {unexpected[0]}")
        self.activate(model, [*active, adapter_name], [1.0] * (len(active) + 1))


def _inject(config, model: nn.Module, adapter_name: str) -> None:
    from peft import inject_adapter_in_model

    with warnings.catch_warnings():
        # several named adapters on one model is the point of AdapterSet, not an accident
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        inject_adapter_in_model(config, model, adapter_name=adapter_name)


def _json_default(value):
    if isinstance(value, set):
        return sorted(value)
    return str(value)


def _infer_config(state: dict[str, Tensor]):
    """Rank and targets from the tensors of a LoRA file that carries no metadata."""
    from peft import LoraConfig

    ranks = {k: v.shape[0] for k, v in state.items() if "lora_A" in k}
    if not ranks:
        raise ValueError("not a PEFT/diffusers LoRA state dict: no lora_A weights")
    rank = max(ranks.values())
    targets = sorted({k.split(".lora_A")[0] for k in ranks})
    return LoraConfig(r=rank, lora_alpha=rank, target_modules=targets)
