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


def _build(model_cls_name: str):
    def build(
        denoiser: dict[str, Any] | None = None,
        scheduler: str = "ddpm",
        scheduler_config: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        text_encoder: str | None = None,
        **backbone_options: Any,
    ) -> Backbone:
        import diffusers

        model = getattr(diffusers, model_cls_name)(**(denoiser or {}))
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

    build.__name__ = f"build_{model_cls_name}"
    build.__doc__ = f"Build a :class:`Backbone` around a randomly initialised ``{model_cls_name}``."
    return build


BUILTIN_BACKBONES = {
    "unet2d": _build("UNet2DModel"),
    "unet2d-condition": _build("UNet2DConditionModel"),
    "dit": _build("DiTTransformer2DModel"),
    "unet1d": _build("UNet1DModel"),
}


def builtin_schedulers() -> dict[str, Any]:
    """The diffusers schedulers difforge knows by short name."""
    import diffusers

    return {
        "ddpm": diffusers.DDPMScheduler,
        "ddim": diffusers.DDIMScheduler,
        "euler": diffusers.EulerDiscreteScheduler,
        "flow_euler": diffusers.FlowMatchEulerDiscreteScheduler,
    }
