"""Music ControlNet (Wu et al., 2023): a ControlNet over the spectrogram UNet, conditioned on
time-varying melody, dynamics and rhythm controls, any subset of them, partially specified in time.

The ControlNet, the denoiser that joins it to the frozen base (``ControlNetDenoiser``, which
takes the control image as the extra model input ``controlnet_cond``) and its training objective
(``controlnet``) are the core's; this module fixes the music world's settings: the control image
has :data:`~difforge_audio.controls.CONTROL_CHANNELS` channels, and the conditioning encoder keeps
the spectrogram's resolution because the model works in pixel (spectrogram) space.
"""

from __future__ import annotations

from torch import nn

from difforge.plugin_api import ControlNetDenoiser
from difforge.plugin_api import controlnet_from_unet as core_controlnet_from_unet

from .controls import CONTROL_CHANNELS

#: the conditioning encoder's channels: one level, so it does not downsample the control image
CONDITIONING_EMBEDDING = (16,)


def controlnet_from_unet(unet) -> nn.Module:
    """A ControlNet for the music world, initialised from ``unet`` (encoder copied, outputs zeroed)."""
    return core_controlnet_from_unet(unet, CONTROL_CHANNELS, CONDITIONING_EMBEDDING)


__all__ = ["CONDITIONING_EMBEDDING", "ControlNetDenoiser", "controlnet_from_unet"]
