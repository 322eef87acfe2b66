"""Generate spectrograms (and audio) from captions, optionally under Music ControlNet controls."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .controlnet import ControlNetDenoiser
from .controls import Controls

DEFAULT_SAMPLER, DEFAULT_STEPS = "ddpm", 50
#: ControlNet residual scale, chosen on validation references (neither training nor test clips)
#: by ``training/train_music_controlnet.py``; music-controlnet-tiny's metrics.json records the
#: selection. At 1.0 its dynamics control is too weak to follow.
DEFAULT_CONDITIONING_SCALE = 3.0


class MusicPipeline:
    """The base backbone, an optional ControlNet, and the codec that turns spectrograms into audio.

    Args:
        backbone: a text-to-spectrogram ``difforge.Backbone`` (e.g. ``load_base()``).
        controlnet: a ``ControlNetModel`` made for it (e.g. ``load_controlnet()``), or ``None``.
        conditioning_scale: multiplies the ControlNet's residuals (diffusers'
            ``controlnet_conditioning_scale``).
    """

    def __init__(self, backbone, controlnet=None, conditioning_scale: float = DEFAULT_CONDITIONING_SCALE) -> None:
        from difforge import Backbone

        self.base = backbone
        self.controlled = None
        if controlnet is not None:
            wrapper = ControlNetDenoiser(backbone.denoiser, controlnet, conditioning_scale)
            self.controlled = Backbone(wrapper, backbone.scheduler, backbone.parameterization.name,
                                       text_encoder=backbone.text_encoder, tokenizer=backbone.tokenizer)

    @classmethod
    def from_pretrained(cls, base: str = "music-sd-tiny", controlnet: str | None = "music-controlnet-tiny",
                        adapters: Sequence[tuple[str, float]] = (),
                        conditioning_scale: float = DEFAULT_CONDITIONING_SCALE):
        """The embedded models (or local paths), with optional LoRAs on the base
        (``adapters=[("music-sd-tiny-tango2", 1.0)]``)."""
        from .models import load_base, load_controlnet

        return cls(load_base(base, adapters), load_controlnet(controlnet) if controlnet else None, conditioning_scale)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], controls: Sequence[Controls] | None = None, *,
                 num_steps: int = DEFAULT_STEPS, sampler: str = DEFAULT_SAMPLER, guidance_scale: float = 3.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Spectrograms ``(N, 1, n_mels, frames)`` in [-1, 1] for ``prompts`` (and ``controls``,
        one per prompt, if given). Ancestral (DDPM) sampling is the default: with these tiny
        models, 30 deterministic DDIM steps leave a noise floor in the silent bands."""
        if controls is None:
            return self.base.sample(list(prompts), num_steps=num_steps, sampler=sampler,
                                    guidance_scale=guidance_scale, generator=generator)
        if self.controlled is None:
            raise ValueError("controls were given but this pipeline has no ControlNet")
        if len(controls) != len(prompts):
            raise ValueError(f"got {len(controls)} controls for {len(prompts)} prompts; give one per prompt")
        n_mels = self.base.sample_shape()[1]
        images = torch.stack([c.image(n_mels) for c in controls])
        return self.controlled.sample(list(prompts), num_steps=num_steps, sampler=sampler,
                                      guidance_scale=guidance_scale, generator=generator,
                                      extra={"controlnet_cond": images})
