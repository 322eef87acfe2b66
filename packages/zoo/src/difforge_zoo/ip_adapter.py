"""The IP-Adapter training objective (Ye et al. 2023): the denoising loss with the training
image itself as the image prompt, embedded by a frozen CLIP image encoder; the image is
dropped (zero embedding) with ``image_drop`` and the caption with ``data.caption_dropout``,
so both kinds of classifier-free guidance work at sampling time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from difforge.plugin_api import ConfigError, DenoisingObjective, batch_samples, resolve_model_path

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class IpAdapterObjectiveOptions(BaseModel):
    """Options of the ``ip-adapter`` objective."""

    model_config = ConfigDict(extra="forbid")

    image_encoder: str | None = Field(None, description="a transformers CLIPModel directory; default: <model>/clip")
    clip_normalize: bool = Field(False,
                                 description="normalise with OpenAI CLIP's mean/std (the zoo's CLIP takes [-1, 1])")
    image_drop: float = Field(0.05, ge=0, le=1)
    caption_dropout: float | None = None
    noise_offset: float = 0.0


class ImageEncoder:
    """A frozen CLIP image tower: pixels in [-1, 1] -> projected image embeddings."""

    def __init__(self, path: str | Path, normalize: bool = False) -> None:
        from transformers import CLIPModel

        path = Path(path)
        if not (path / "config.json").exists():
            raise ConfigError(f"ip-adapter: no CLIP model at {path} (set objective.options.image_encoder)")
        self.model = CLIPModel.from_pretrained(path).eval().requires_grad_(False)
        self.size = self.model.config.vision_config.image_size
        self.normalize = normalize

    @torch.no_grad()
    def __call__(self, pixels: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, projection_dim)."""
        x = pixels.float()
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False)
        if self.normalize:
            mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
            x = ((x + 1) / 2 - mean) / std
        out = self.model.get_image_features(pixel_values=x)
        return out if isinstance(out, Tensor) else out.pooler_output


def default_image_encoder(model_reference: str | Path) -> Path:
    """``<model dir>/clip``: where the zoo keeps the full CLIP next to the pipeline."""
    return resolve_model_path(model_reference) / "clip"


class IpAdapterObjective(DenoisingObjective):
    """Denoising loss with the training image as the image prompt of an ``ip-adapter``."""

    name = "ip-adapter"
    requires = frozenset({"images", "captions", "adapter:ip-adapter"})
    options_model = IpAdapterObjectiveOptions

    def __init__(self, backbone, default_caption_dropout: float = 0.0, **options: Any) -> None:
        self.ip = IpAdapterObjectiveOptions(**options)
        super().__init__(backbone, default_caption_dropout, caption_dropout=self.ip.caption_dropout,
                         noise_offset=self.ip.noise_offset)
        self.encoder: ImageEncoder | None = None

    def setup(self, context) -> None:
        """Check that the run trains an IP-Adapter and load the image encoder."""
        adapters, config = context.adapters, context.config
        if adapters is None or adapters.types.get(config.adapter.name).name != "ip-adapter":
            raise ConfigError("objective.name: 'ip-adapter' trains an adapter of type 'ip-adapter' (set adapter.type)")
        if config.model.pretrained is None and self.ip.image_encoder is None:
            raise ConfigError("objective.options.image_encoder: required when the model is built from scratch")
        path = self.ip.image_encoder or default_image_encoder(config.model.pretrained)
        self.encoder = ImageEncoder(path, self.ip.clip_normalize)

    def extra_inputs(self, batch, generator):
        """The image prompt: each training image's CLIP embedding, zero for an ``image_drop`` share."""
        embeds = self.encoder(batch_samples(batch)).to(self.backbone.device)
        keep = (torch.rand(len(embeds), generator=generator) >= self.ip.image_drop).to(embeds)
        return {**super().extra_inputs(batch, generator), "ip_adapter_image_embeds": embeds * keep[:, None]}
