"""How difforge calls a denoiser: one :class:`DenoiserSpec` per denoiser class, registered by name.

The core registers the diffusers classes it knows; a plugin that brings its own denoiser (a
ControlNet-controlled UNet, a 1-D policy UNet conditioned on observations, a video UNet)
registers a spec for it through ``difforge_register_denoisers`` instead of wrapping it to look
like an image model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: what a denoiser can be conditioned on
CONDITIONING_KINDS = ("text", "class", "vector", "none")


def image_shape(config: Any) -> tuple[int, ...]:
    """``(in_channels, H, W)`` from a diffusers config's ``in_channels`` and ``sample_size``."""
    channels = getattr(config, "in_channels", 4)
    size = getattr(config, "sample_size", 32)
    return (channels, *size) if isinstance(size, (list, tuple)) else (channels, size, size)


def sequence_shape(config: Any) -> tuple[int, ...]:
    """``(in_channels, length)`` from a 1-D model's ``in_channels`` and ``sample_size``."""
    return (getattr(config, "in_channels", 2), int(getattr(config, "sample_size", 64)))


def unknown_shape(config: Any) -> None:
    """No shape can be read off the config (e.g. a video model's frame count): ``sample(shape=...)`` is needed."""
    return None


@dataclass(frozen=True)
class DenoiserSpec:
    """The calling convention of one denoiser class.

    Args:
        condition_kwarg: the keyword that takes the condition (``encoder_hidden_states`` for
            text, ``class_labels``, ``global_cond`` for an observation vector), ``None`` for an
            unconditional model.
        conditioning: one of :data:`CONDITIONING_KINDS`, or a function of the denoiser's
            config returning one (a ``UNet2DModel`` is class-conditional only with
            ``num_class_embeds``).
        timestep_kwarg: the keyword that takes the timestep; ``None`` passes it as the second
            positional argument, as diffusers' UNets take it.
        inputs: further keyword inputs the denoiser accepts per call (e.g. ``controlnet_cond``);
            they arrive through the ``extra`` mapping of :meth:`Backbone.predict` and
            :meth:`Backbone.sample`, and a batch item under the same key reaches them in training.
        sample_shape: one sample's shape in denoiser space from the denoiser's config, or
            ``None`` when the config does not fix it.
        model_class: ``"module:Class"`` of a denoiser class that is not in diffusers, so that a
            saved backbone loads it again (it must be a diffusers ``ModelMixin``).
    """

    condition_kwarg: str | None = "encoder_hidden_states"
    conditioning: str | Callable[[Any], str] = "text"
    timestep_kwarg: str | None = None
    inputs: frozenset[str] = field(default_factory=frozenset)
    sample_shape: Callable[[Any], tuple[int, ...] | None] = image_shape
    model_class: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.conditioning, str) and self.conditioning not in CONDITIONING_KINDS:
            raise ValueError(f"DenoiserSpec.conditioning: {self.conditioning!r} is not one of "
                             f"{', '.join(CONDITIONING_KINDS)}")
        if self.condition_kwarg is None and self.conditioning != "none":
            raise ValueError("DenoiserSpec: a model without condition_kwarg is unconditional (conditioning='none')")
        object.__setattr__(self, "inputs", frozenset(self.inputs))

    def conditioning_kind(self, config: Any) -> str:
        """What a denoiser with ``config`` is conditioned on."""
        return self.conditioning(config) if callable(self.conditioning) else self.conditioning


def _class_if_embedded(config: Any) -> str:
    classes = getattr(config, "num_class_embeds", None) or getattr(config, "num_embeds_ada_norm", None)
    return "class" if classes else "none"


#: ``timestep_cond``: the guidance-scale embedding of a guidance-distilled UNet (``time_cond_proj_dim``)
UNET2D_CONDITION = DenoiserSpec(inputs=frozenset({"timestep_cond"}))
UNET2D = DenoiserSpec(condition_kwarg="class_labels", conditioning=_class_if_embedded)
DIT = DenoiserSpec(condition_kwarg="class_labels", conditioning="class", timestep_kwarg="timestep")
UNET1D = DenoiserSpec(condition_kwarg=None, conditioning="none", sample_shape=sequence_shape)
#: video (ModelScope-style text-to-video): samples (C, frames, H, W); the frame count is the caller's
UNET3D_CONDITION = DenoiserSpec(sample_shape=unknown_shape)

__all__ = ["CONDITIONING_KINDS", "DIT", "DenoiserSpec", "UNET1D", "UNET2D", "UNET2D_CONDITION", "UNET3D_CONDITION",
           "image_shape", "sequence_shape", "unknown_shape"]
