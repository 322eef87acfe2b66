"""Music ControlNet (Wu et al., 2023): a ControlNet over the spectrogram UNet, conditioned on
time-varying melody, dynamics and rhythm controls, any subset of them, partially specified in time.

The ControlNet is diffusers' ``ControlNetModel`` made from the base UNet (a trainable copy of
its encoder and middle block, zero-initialised output convolutions); its conditioning encoder
keeps the spectrogram's resolution because the model works in pixel (spectrogram) space.
:class:`ControlledUNet` joins the frozen UNet and the ControlNet as one denoiser that takes the
control image as the extra input ``controlnet_cond``; its registered spec
(:data:`CONTROLLED_UNET_SPEC`) tells the core so, and the core's samplers, guidance and
objectives pass the control through as they pass any extra model input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from difforge.plugin_api import DenoiserSpec

from .controls import CONTROL_CHANNELS


def controlnet_from_unet(unet) -> nn.Module:
    """A ControlNet initialised from ``unet`` (its encoder weights copied, outputs zeroed)."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_channels=CONTROL_CHANNELS,
                                     conditioning_embedding_out_channels=(16,))


class ControlledUNet(nn.Module):
    """A UNet whose encoder/middle features get the ControlNet's residuals for the control
    image ``controlnet_cond`` of the call. Called like the UNet it wraps, plus that input."""

    def __init__(self, unet: nn.Module, controlnet: nn.Module, conditioning_scale: float = 1.0) -> None:
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet
        self.conditioning_scale = conditioning_scale

    @property
    def config(self):
        """The wrapped UNet's config (sample shape, channels)."""
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def forward(self, sample: Tensor, timestep, encoder_hidden_states: Tensor | None = None,
                controlnet_cond: Tensor | None = None, **kwargs):
        """The UNet's output, with the ControlNet's residuals when ``controlnet_cond``
        ``(B, CONTROL_CHANNELS, n_mels, frames)`` is given (``None``: no control)."""
        if controlnet_cond is None:
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)
        if controlnet_cond.ndim != 4 or controlnet_cond.shape[1] != CONTROL_CHANNELS:
            raise ValueError(f"controlnet_cond must be (batch, {CONTROL_CHANNELS}, mels, frames), "
                             f"got {tuple(controlnet_cond.shape)}")
        if controlnet_cond.shape[0] != sample.shape[0]:
            raise ValueError(f"controlnet_cond has {controlnet_cond.shape[0]} rows for a batch of {sample.shape[0]}")
        control = controlnet_cond.to(sample.device, sample.dtype)
        down, mid = self.controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                    controlnet_cond=control, conditioning_scale=self.conditioning_scale,
                                    return_dict=False)
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                         down_block_additional_residuals=down, mid_block_additional_residual=mid, **kwargs)


#: how the core calls a :class:`ControlledUNet`: a text-conditioned UNet that also takes ``controlnet_cond``
CONTROLLED_UNET_SPEC = DenoiserSpec(inputs=frozenset({"controlnet_cond"}))
