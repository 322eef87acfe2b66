"""The student CLIP: where it is read from, which of its parameters train, and how it is saved
(the transformers ``CLIPModel`` layout, beside its tokenizer) and used (``encode_image`` /
``encode_text``, as open_clip-style evaluation code calls a model)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from difforge.plugin_api import ConfigError, WeightsError, require_finite, resolve_model_path

#: what ``trainable`` may name: SDS-CLIP's LayerNorms, a LoRA on the attention projections,
#: the vision tower (DIVA), or the whole CLIP (NegCLIP)
TRAINABLE = ("layernorm", "lora", "vision", "all")
LORA_TARGETS = ("q_proj", "v_proj")


def clip_dir(reference: str | Path) -> Path:
    """The folder of a CLIPModel: ``reference`` itself (``config.json`` of ``model_type: clip``) or
    its ``clip/`` subfolder (the zoo's pipelines keep their CLIP there); a model name is resolved
    by the installed plugins (``shapes-sd-tiny``)."""
    path = resolve_model_path(reference)
    for candidate in (path, path / "clip"):
        config = candidate / "config.json"
        if not config.is_file():
            continue
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise ConfigError(f"{config}: not a JSON object ({_first_line(exc)})") from None
        if model_type == "clip":
            return candidate
    raise ConfigError(f"student {str(reference)!r}: neither {path} nor {path / 'clip'} holds a CLIPModel "
                      "(config.json with model_type 'clip')")


def tokenizer_dir(reference: str | Path) -> Path:
    """The tokenizer beside a CLIP: in its folder, or the pipeline's ``tokenizer/``."""
    folder = clip_dir(reference)
    for candidate in (folder, folder / "tokenizer", folder.parent / "tokenizer"):
        if (candidate / "tokenizer_config.json").exists():
            return candidate
    raise ConfigError(f"student {str(reference)!r}: no tokenizer in {folder} or beside it")


def load_clip(reference: str | Path):
    """``(CLIPModel, CLIPTokenizer)`` from local safetensors only."""
    from safetensors import SafetensorError
    from transformers import CLIPModel, CLIPTokenizer

    folder = clip_dir(reference)
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt"})
    if pickled and not any(folder.glob("*.safetensors")):
        raise WeightsError(f"student {folder}: {pickled[0]} is a pickled weights file and there is no .safetensors "
                           "beside it; difforge loads safetensors only")
    try:
        model = CLIPModel.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
        raise WeightsError(f"student {folder}: cannot be loaded ({_first_line(exc)})") from None
    require_finite(model.named_parameters(), f"student {folder / 'model.safetensors'}")
    return model.eval(), CLIPTokenizer.from_pretrained(tokenizer_dir(reference))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def layer_norms(clip: nn.Module) -> list[nn.LayerNorm]:
    """Every LayerNorm of both towers (SDS-CLIP's trainable parameters)."""
    return [m for m in clip.modules() if isinstance(m, nn.LayerNorm)]


def select_trainable(clip: nn.Module, mode: str, lora_rank: int = 4) -> nn.ModuleList:
    """Freeze ``clip`` and return the modules whose parameters train under ``mode``. ``lora``
    injects a PEFT LoRA on the attention ``q_proj``/``v_proj`` of both towers first."""
    clip.requires_grad_(False)
    if mode == "layernorm":
        modules = layer_norms(clip)
    elif mode == "vision":
        modules = [clip.vision_model, clip.visual_projection]
    elif mode == "all":
        modules = [clip]
    elif mode == "lora":
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.lora import LoraLayer

        inject_adapter_in_model(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=list(LORA_TARGETS)), clip)
        modules = [part for m in clip.modules() if isinstance(m, LoraLayer) for part in (m.lora_A, m.lora_B)]
    else:
        raise ConfigError(f"objective.options.trainable: {mode!r} is not one of {', '.join(TRAINABLE)}")
    selected = nn.ModuleList(modules)
    selected.requires_grad_(True)
    return selected


def merged_clip(clip: nn.Module):
    """A plain ``CLIPModel`` with any injected LoRA merged into its weights (the input is untouched)."""
    from peft.tuners.lora import LoraLayer
    from transformers import CLIPModel

    if not any(isinstance(m, LoraLayer) for m in clip.modules()):
        return clip
    merged = copy.deepcopy(clip)
    for module in merged.modules():
        if isinstance(module, LoraLayer):
            module.merge()
    state = {k.replace(".base_layer.", "."): v for k, v in merged.state_dict().items() if "lora_" not in k}
    plain = CLIPModel(clip.config)
    plain.load_state_dict(state, strict=True)
    return plain


def save_clip(clip: nn.Module, tokenizer, path: str | Path) -> Path:
    """Save in the transformers ``CLIPModel`` layout (``config.json``, ``model.safetensors``) with
    the tokenizer beside it, so ``CLIPModel.from_pretrained(path)`` and :func:`load_clip` read it."""
    path = Path(path)
    merged_clip(clip).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def count_parameters(modules: nn.Module) -> int:
    """Distinct parameters of ``modules`` (shared ones counted once)."""
    return sum(p.numel() for p in {id(p): p for p in modules.parameters()}.values())


def pixels(images: Sequence[np.ndarray] | Tensor) -> Tensor:
    """``(N, 3, H, W)`` in [-1, 1] from uint8 HWC arrays (the zoo's pixel convention), or a tensor as is."""
    if isinstance(images, Tensor):
        return images
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class ClipEncoder(nn.Module):
    """A CLIP with open_clip's calling convention: ``encode_image(pixels)``, ``encode_text(tokens)``,
    ``tokenize(texts)``; embeddings are projected (not normalised, as open_clip's by default)."""

    def __init__(self, clip: nn.Module, tokenizer) -> None:
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, reference: str | Path) -> ClipEncoder:
        """Load a saved student (or the zoo's CLIP by model name)."""
        return cls(*load_clip(reference))

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Token ids padded to the tokenizer's maximum length."""
        return self.tokenizer(list(texts), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    def encode_image(self, images: Tensor, normalize: bool = False) -> Tensor:
        """Projected image embeddings of pixels in [-1, 1] (``(N, 3, 32, 32)``)."""
        device = self.clip.logit_scale.device
        features = self.clip.visual_projection(self.clip.vision_model(pixel_values=images.to(device)).pooler_output)
        return nn.functional.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: Tensor, normalize: bool = False) -> Tensor:
        """Projected text embeddings of token ids."""
        device = self.clip.logit_scale.device
        features = self.clip.text_projection(self.clip.text_model(input_ids=tokens.to(device)).pooler_output)
        return nn.functional.normalize(features, dim=-1) if normalize else features

    @torch.no_grad()
    def similarity(self, images: Sequence[np.ndarray] | Tensor, texts: Sequence[str],
                   batch_size: int = 512) -> np.ndarray:
        """Cosine similarities ``[len(images), len(texts)]``."""
        image_batches = [self.encode_image(pixels(images)[i:i + batch_size], normalize=True)
                         for i in range(0, len(images), batch_size)]
        unique = list(dict.fromkeys(texts))
        text_embeds = torch.cat([self.encode_text(self.tokenize(unique[i:i + batch_size]), normalize=True)
                                 for i in range(0, len(unique), batch_size)])
        index = torch.tensor([unique.index(t) for t in texts])
        return (torch.cat(image_batches) @ text_embeds[index].T).cpu().numpy()

    def option_scores(self, images: Sequence[np.ndarray], options: Sequence[Sequence[str]]) -> np.ndarray:
        """``scores[n, k]``: image ``n`` with its own caption option ``k``."""
        flat = [t for opts in options for t in opts]
        sim = self.similarity(images, flat)
        width = len(options[0])
        return np.stack([sim[n, n * width:(n + 1) * width] for n in range(len(images))])


__all__ = ["ClipEncoder", "LORA_TARGETS", "TRAINABLE", "clip_dir", "count_parameters", "layer_norms", "load_clip",
           "merged_clip", "pixels", "save_clip", "select_trainable", "tokenizer_dir"]
