"""The ``clip-contrastive`` objective: pretrain the backbone's CLIP text encoder together with a
CLIP vision tower on image-caption pairs with the symmetric InfoNCE loss (Radford et al. 2021),
as Stable Diffusion's text encoder was pretrained before the UNet saw it.

The objective builds a ``transformers.CLIPModel`` whose text transformer *is* the backbone's
text encoder (so the trained text encoder stays in the backbone) and whose vision tower and
projections are new; it trains the whole CLIP and saves the backbone with the CLIP beside it
under ``clip/`` (the layout the zoo's IP-Adapter image encoder reads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from difforge.plugin_api import ConfigError, Objective, batch_samples


class ClipContrastiveOptions(BaseModel):
    """Options of the ``clip-contrastive`` objective: the vision tower's shape and the shared
    projection width."""

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(32, ge=1)
    patch_size: int = Field(4, ge=1)
    vision_hidden_size: int = Field(64, ge=1)
    vision_intermediate_size: int = Field(256, ge=1)
    vision_layers: int = Field(3, ge=1)
    vision_heads: int = Field(4, ge=1)
    projection_dim: int = Field(64, ge=1)


class ClipContrastiveObjective(Objective):
    """Symmetric InfoNCE over a batch's images and captions; trains text and vision towers."""

    name = "clip-contrastive"
    requires = frozenset({"images", "captions"})
    options_model = ClipContrastiveOptions

    def __init__(self, backbone, **options: Any) -> None:
        super().__init__(backbone, **options)
        from transformers import CLIPConfig, CLIPModel, CLIPTextModel

        encoder = backbone.text_encoder
        if not isinstance(encoder, CLIPTextModel) or backbone.tokenizer is None:
            raise ConfigError("objective.name: 'clip-contrastive' trains a CLIP text encoder (transformers "
                              f"CLIPTextModel) with its tokenizer; this model has {type(encoder).__name__}")

        o = self.options
        vision = {"image_size": o.image_size, "patch_size": o.patch_size, "hidden_size": o.vision_hidden_size,
                  "intermediate_size": o.vision_intermediate_size, "num_hidden_layers": o.vision_layers,
                  "num_attention_heads": o.vision_heads}
        self.clip = CLIPModel(CLIPConfig(text_config=encoder.config.to_dict(), vision_config=vision,
                                         projection_dim=o.projection_dim))
        # the CLIP's text tower is the backbone's text encoder itself (transformers 5 nests the
        # CLIPTextModel; earlier versions nest its inner transformer)
        inner = getattr(encoder, "text_model", encoder)
        if not isinstance(inner, type(self.clip.text_model)):
            raise ConfigError(f"objective.name: 'clip-contrastive' cannot place a {type(inner).__name__} "
                              f"where CLIPModel holds a {type(self.clip.text_model).__name__}")
        self.clip.text_model = inner

    def trainable_modules(self, config) -> dict[str, nn.Module]:
        """The whole CLIP (the backbone's text transformer, the vision tower, both projections)."""
        if config.adapter is not None:
            raise ConfigError("adapter: the 'clip-contrastive' objective pretrains the whole CLIP; "
                              "remove the adapter section")
        return {"clip": self.clip}

    def loss(self, batch, denoiser, generator):
        tokenizer, device = self.backbone.tokenizer, self.clip.device
        ids = tokenizer(list(batch["caption"]), padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids.to(device)
        output = self.clip(input_ids=ids, pixel_values=batch_samples(batch).to(device), return_loss=True)
        return output.loss, {"logit_scale": self.clip.logit_scale.detach().exp()}

    def save_trained(self, output_dir: Path, name: str = "model") -> Path:
        """The backbone (with the trained text encoder) under ``<output_dir>/<name>`` and the
        whole CLIP under ``<output_dir>/<name>/clip``."""
        path = super().save_trained(output_dir, name)
        self.clip.save_pretrained(path / "clip")
        return path


__all__ = ["ClipContrastiveObjective", "ClipContrastiveOptions"]
