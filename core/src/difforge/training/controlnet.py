"""The ``controlnet`` objective: train a ControlNet (Zhang et al. 2023) on a frozen base with
the denoising loss, the control image of each sample given as the batch item ``controlnet_cond``.

The objective wraps the backbone's UNet in a :class:`~difforge.backbone.controlnet.ControlNetDenoiser`
with a ControlNet made from it (or loaded to continue training), declares the ControlNet as the
only trained module, and saves it in diffusers' layout under ``<output.dir>/controlnet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..backbone.controlnet import ControlNetDenoiser, controlnet_from_unet
from ..errors import ConfigError
from .objectives import DenoisingObjective


class ControlNetOptions(BaseModel):
    """Options of the ``controlnet`` objective."""

    model_config = ConfigDict(extra="forbid")

    controlnet: str | None = Field(None, description="a ControlNetModel directory to continue; default: a new "
                                                     "one made from the UNet")
    conditioning_channels: int = Field(3, ge=1)
    conditioning_embedding_out_channels: list[int] = Field(default_factory=lambda: [16, 32, 96, 256])
    conditioning_scale: float = Field(1.0, gt=0)
    caption_dropout: float | None = None
    noise_offset: float = 0.0


class ControlNetObjective(DenoisingObjective):
    """Denoising loss of the UNet + ControlNet, training only the ControlNet."""

    name = "controlnet"
    requires = frozenset({"images", "controlnet_cond"})
    options_model = ControlNetOptions

    def __init__(self, backbone, default_caption_dropout: float = 0.0, **options: Any) -> None:
        self.control = ControlNetOptions(**options)
        super().__init__(backbone, default_caption_dropout, caption_dropout=self.control.caption_dropout,
                         noise_offset=self.control.noise_offset)
        unet = backbone.denoiser
        if not hasattr(unet, "down_blocks") or backbone.conditioning != "text":
            raise ConfigError(f"objective.name: 'controlnet' needs a text-conditioned UNet, got {type(unet).__name__}")
        if self.control.controlnet is not None:
            from diffusers import ControlNetModel

            path = Path(self.control.controlnet)
            if not (path / "config.json").exists():
                raise ConfigError(f"objective.options.controlnet: {path} is not a ControlNetModel directory")
            self.controlnet = ControlNetModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        else:
            self.controlnet = controlnet_from_unet(unet, self.control.conditioning_channels,
                                                   tuple(self.control.conditioning_embedding_out_channels))
        backbone.replace_denoiser(ControlNetDenoiser(unet, self.controlnet, self.control.conditioning_scale))

    def trainable_modules(self, config) -> dict:
        """The ControlNet (an adapter section would put its adapter on it)."""
        return {"controlnet": self.controlnet}

    def save_trained(self, output_dir: Path, name: str = "model") -> Path:
        """The ControlNet alone, in diffusers' layout (``ControlNetModel.from_pretrained``), under
        ``<output_dir>/controlnet`` (``controlnet_ema`` for the EMA weights)."""
        path = Path(output_dir) / name.replace("model", "controlnet")
        self.controlnet.save_pretrained(path)
        return path


__all__ = ["ControlNetObjective", "ControlNetOptions"]
