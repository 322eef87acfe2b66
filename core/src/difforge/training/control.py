"""The ``controlled-denoising`` objective: the denoising loss with a condition map computed
from each training image (its foreground mask or its edges) fed to a controllable adapter
(the CSC-Tuner of ``sc-tuner`` with ``condition_channels: 1``), as SCEdit trains it."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ..errors import ConfigError
from .data import batch_samples
from .objectives import DenoisingObjective


def foreground_mask(pixels: Tensor, threshold: float = 0.15) -> Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W): 1 where a pixel differs from the image's border colour."""
    border = torch.cat([pixels[..., 0, :], pixels[..., -1, :], pixels[..., :, 0], pixels[..., :, -1]], dim=-1)
    background = border.median(dim=-1).values[..., None, None]
    return ((pixels - background).abs().amax(dim=1, keepdim=True) > threshold).to(pixels.dtype)


def sobel_edges(pixels: Tensor) -> Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W): Sobel gradient magnitude of the grey image, in [0, 1]."""
    grey = pixels.mean(dim=1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=pixels.dtype, device=pixels.device)
    gx = F.conv2d(grey, kx.view(1, 1, 3, 3), padding=1)
    gy = F.conv2d(grey, kx.t().reshape(1, 1, 3, 3), padding=1)
    magnitude = (gx**2 + gy**2).sqrt()
    return magnitude / magnitude.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)


CONDITIONS = {"mask": foreground_mask, "edges": sobel_edges}


class ControlledDenoisingOptions(BaseModel):
    """Options of the ``controlled-denoising`` objective."""

    model_config = ConfigDict(extra="forbid")

    condition: Literal["mask", "edges"] = "mask"
    condition_drop: float = Field(0.1, ge=0, le=1, description="share of samples trained with an empty condition")
    caption_dropout: float | None = None
    noise_offset: float = 0.0


class ControlledDenoisingObjective(DenoisingObjective):
    """Denoising loss with a per-image condition map fed to the run's ``sc-tuner`` adapter."""

    name = "controlled-denoising"
    requires = frozenset({"images", "adapter:sc-tuner"})
    options_model = ControlledDenoisingOptions

    def __init__(self, backbone, default_caption_dropout: float = 0.0, **options: Any) -> None:
        self.control = ControlledDenoisingOptions(**options)
        super().__init__(backbone, default_caption_dropout, caption_dropout=self.control.caption_dropout,
                         noise_offset=self.control.noise_offset)

    def setup(self, context) -> None:
        """Check that the run trains a controllable SC-Tuner."""
        adapters, cfg = context.adapters, context.config
        adapter_type = adapters.types.get(cfg.adapter.name) if adapters is not None else None
        if adapter_type is None or adapter_type.name != "sc-tuner" or not cfg.adapter.options.get("condition_channels"):
            raise ConfigError("objective.name: 'controlled-denoising' trains an 'sc-tuner' adapter with "
                              "condition_channels: 1 (set adapter.type and adapter.options)")

    def condition_map(self, pixels: Tensor) -> Tensor:
        """The condition map of each image."""
        return CONDITIONS[self.control.condition](pixels)

    def extra_inputs(self, batch, generator):
        """The ``condition_map`` of each image, emptied for a ``condition_drop`` share of them."""
        condition = self.condition_map(batch_samples(batch).float()).to(self.backbone.device)
        keep = (torch.rand(len(condition), generator=generator) >= self.control.condition_drop).to(condition)
        return {**super().extra_inputs(batch, generator), "condition_map": condition * keep[:, None, None, None]}
