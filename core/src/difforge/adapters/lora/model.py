"""LoRA and DoRA through PEFT, saved in diffusers' LoRA layout (``load_lora_weights`` reads it)."""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor, nn

from ...checkpointing import atomic_save_safetensors
from ..peft_tuner import PeftAdapter, adapter_file, json_default, read_safetensors
from .config import DoraOptions, LoraOptions

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
METADATA_KEY = "lora_adapter_metadata"


def diffusers_prefix(model: nn.Module) -> str:
    """The key prefix diffusers uses for this model in LoRA files (``unet`` / ``transformer`` /
    ``text_encoder``)."""
    name = type(model).__name__
    if name.startswith("CLIPText"):
        return "text_encoder"
    return "unet" if "UNet" in name else "transformer"


class LoraAdapter(PeftAdapter):
    """LoRA (Hu et al. 2021): ``W + (alpha / r) B A`` on the target layers."""

    name = "lora"
    options_model = LoraOptions
    peft_type = "LORA"

    def _owns(self, config) -> bool:
        return not config.use_dora and not getattr(config, "_difforge_kind", None)

    def save(self, model, adapter_name, path) -> Path:
        """Write ``<path>/pytorch_lora_weights.safetensors`` in the diffusers LoRA layout."""
        prefix = diffusers_prefix(model)
        state = {f"{prefix}.{k}": v.detach().cpu().contiguous()
                 for k, v in self.state_dict(model, adapter_name).items()}
        config = self.config(model, adapter_name).to_dict()
        metadata = {
            METADATA_KEY: json.dumps({f"{prefix}.{k}": v for k, v in config.items()}, default=json_default),
            "format": "pt",
            "difforge_adapter_type": self.name,
        }
        return atomic_save_safetensors(state, Path(path) / WEIGHT_NAME, metadata=metadata)

    def load(self, model, path, adapter_name) -> None:
        """Load a diffusers-layout LoRA file (``.safetensors`` or a directory holding one); kohya /
        A1111 key layouts are converted with diffusers' converters first."""
        from peft import LoraConfig

        file = adapter_file(path, WEIGHT_NAME)
        state, metadata = read_safetensors(file)
        state = to_diffusers_layout(state, file)
        prefix = diffusers_prefix(model) + "."
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if METADATA_KEY in metadata:
            raw = json.loads(metadata[METADATA_KEY])
            config_dict = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in raw.items()}
            known = set(LoraConfig.__dataclass_fields__) - {"peft_type"}
            config = LoraConfig(**{k: v for k, v in config_dict.items() if k in known})
        else:
            config = _infer_config(state)
        self._inject_loaded(config, model, adapter_name, state, file)


class DoraAdapter(LoraAdapter):
    """DoRA (Liu et al. 2024): LoRA on the direction plus a trained per-column magnitude."""

    name = "dora"
    options_model = DoraOptions

    def _owns(self, config) -> bool:
        return bool(config.use_dora)


def to_diffusers_layout(state: dict[str, Tensor], file: Path) -> dict[str, Tensor]:
    """Convert kohya / A1111 LoRA keys (``lora_unet_..., lora_down/lora_up, alpha``) to PEFT keys
    with diffusers' own converters, folding ``alpha / rank`` into ``lora_B``; diffusers/PEFT files
    pass through unchanged. Text-encoder entries are ignored (difforge adapts the denoiser)."""
    downs = [k for k in state if k.startswith("lora_unet_") and k.endswith(".lora_down.weight")]
    if not downs:
        if any(k.startswith(("lora_te_", "lora_te1_", "lora_te2_")) for k in state):
            raise ValueError(f"{file}: kohya-style LoRA holds no UNet weights")
        return state
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_lora_to_diffusers
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft

    converted: dict[str, Tensor] = {}
    for down in downs:
        module = down[: -len(".lora_down.weight")]
        one = {down: state[down], f"{module}.lora_up.weight": state[f"{module}.lora_up.weight"]}
        alpha = state.get(f"{module}.alpha")
        if alpha is not None:
            one[f"{module}.alpha"] = alpha
        if f"{module}.dora_scale" in state:
            one[f"{module}.dora_scale"] = state[f"{module}.dora_scale"]
        diffusers_state, alphas = _convert_non_diffusers_lora_to_diffusers(one)
        peft_state = convert_unet_state_dict_to_peft(
            {k.removeprefix("unet."): v for k, v in diffusers_state.items()})
        if alpha is not None:
            rank = state[down].shape[0]
            for key in [k for k in peft_state if k.endswith(".lora_B.weight")]:
                peft_state[key] = peft_state[key] * (float(alpha) / rank)
        converted.update(peft_state)
    return converted


def _infer_config(state: dict[str, Tensor]):
    """Rank and targets from the tensors of a LoRA file that carries no metadata."""
    from peft import LoraConfig

    ranks = {k: v.shape[0] for k, v in state.items() if "lora_A" in k}
    if not ranks:
        raise ValueError("not a PEFT/diffusers LoRA state dict: no lora_A weights")
    rank = max(ranks.values())
    targets = sorted({k.split(".lora_A")[0] for k in ranks})
    return LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, rank_pattern={
        t: ranks[f"{t}.lora_A.weight"] for t in targets if ranks.get(f"{t}.lora_A.weight", rank) != rank})
