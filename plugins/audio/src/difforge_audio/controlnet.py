"""Music ControlNet (Wu et al., 2023): a ControlNet over the spectrogram UNet, conditioned on
time-varying melody, dynamics and rhythm controls, any subset of them, partially specified in time.

The ControlNet is diffusers' ``ControlNetModel`` made from the base UNet (a trainable copy of
its encoder and middle block, zero-initialised output convolutions); its conditioning encoder
keeps the spectrogram's resolution because the model works in pixel (spectrogram) space.
:class:`ControlledUNet` wraps the frozen UNet and the ControlNet as one denoiser, so the
core's samplers, guidance and objectives use it unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .controls import CONTROL_CHANNELS


def controlnet_from_unet(unet) -> nn.Module:
    """A ControlNet initialised from ``unet`` (its encoder weights copied, outputs zeroed)."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_channels=CONTROL_CHANNELS,
                                     conditioning_embedding_out_channels=(16,))


class ControlledUNet(nn.Module):
    """A UNet whose encoder/middle features get the ControlNet's residuals for the current
    control image (:meth:`set_control`). Called like the UNet it wraps."""

    def __init__(self, unet: nn.Module, controlnet: nn.Module, conditioning_scale: float = 1.0) -> None:
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet
        self.conditioning_scale = conditioning_scale
        self.control: Tensor | None = None

    @property
    def wrapped_denoiser(self) -> nn.Module:
        return self.unet

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def set_control(self, control: Tensor | None) -> ControlledUNet:
        """The ``(B, CONTROL_CHANNELS, n_mels, frames)`` control images of the next calls
        (``None``: no control). A batch doubled for classifier-free guidance reuses them."""
        if control is not None and (control.ndim != 4 or control.shape[1] != CONTROL_CHANNELS):
            raise ValueError(f"control must be (batch, {CONTROL_CHANNELS}, mels, frames), got {tuple(control.shape)}")
        self.control = control
        return self

    def forward(self, sample: Tensor, timestep, encoder_hidden_states: Tensor | None = None, **kwargs):
        """The UNet's output, with the ControlNet's residuals when a control is set."""
        if self.control is None:
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)
        control = self.control.to(sample.device, sample.dtype)
        if control.shape[0] != sample.shape[0]:
            if sample.shape[0] % control.shape[0]:
                raise ValueError(f"control batch {control.shape[0]} does not divide the sample batch {sample.shape[0]}")
            control = control.repeat(sample.shape[0] // control.shape[0], 1, 1, 1)
        down, mid = self.controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                    controlnet_cond=control, conditioning_scale=self.conditioning_scale,
                                    return_dict=False)
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                         down_block_additional_residuals=down, mid_block_additional_residual=mid, **kwargs)
