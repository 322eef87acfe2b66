"""Backbones built from configuration (random weights), registered by name.

Each builder takes the diffusers config of its denoiser (``denoiser``), the scheduler class
name and config, and optional ``vae`` (``AutoencoderKL`` config) / ``text_encoder`` (a local
pipeline directory whose ``text_encoder`` and ``tokenizer`` are reused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .backbone import Backbone


def _scheduler(name: str, config: dict[str, Any] | None):
    from ..plugins import get_registry

    return get_registry("schedulers").get(name)(**(config or {}))


def backbone_builder(model_class: str | type):
    """A registrable backbone builder around ``model_class`` (a diffusers class name, or a
    ``ModelMixin`` class of a plugin): ``build(denoiser={config}, scheduler="ddpm",
    scheduler_config=None, vae=None, text_encoder=None, **backbone_options)``."""
    name = model_class if isinstance(model_class, str) else model_class.__name__

    def build(
        denoiser: dict[str, Any] | None = None,
        scheduler: str = "ddpm",
        scheduler_config: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        text_encoder: str | None = None,
        **backbone_options: Any,
    ) -> Backbone:
        import diffusers

        cls = getattr(diffusers, model_class) if isinstance(model_class, str) else model_class
        model = cls(**(denoiser or {}))
        autoencoder = diffusers.AutoencoderKL(**vae) if vae is not None else None
        encoder = tokenizer = None
        if text_encoder is not None:
            from transformers import CLIPTextModel, CLIPTokenizer

            root = Path(text_encoder)
            encoder = CLIPTextModel.from_pretrained(root / "text_encoder", use_safetensors=True)
            tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
        return Backbone(
            model,
            _scheduler(scheduler, scheduler_config),
            vae=autoencoder,
            text_encoder=encoder,
            tokenizer=tokenizer,
            **backbone_options,
        )

    build.__name__ = f"build_{name}"
    build.__doc__ = f"Build a :class:`Backbone` around a randomly initialised ``{name}``."
    return build


build_unet2d = backbone_builder("UNet2DModel")
build_unet2d_condition = backbone_builder("UNet2DConditionModel")
build_dit = backbone_builder("DiTTransformer2DModel")
build_unet1d = backbone_builder("UNet1DModel")
build_unet3d_condition = backbone_builder("UNet3DConditionModel")
