"""ControlNet (Zhang et al. 2023) as a denoiser: a frozen UNet plus a trainable copy of its
encoder whose zero-initialised outputs are added to the UNet's skip features.

:class:`ControlNetDenoiser` is called like the UNet it wraps, plus the per-call input
``controlnet_cond`` (the control image); its registered :data:`CONTROLNET_DENOISER_SPEC` tells
the backbone so, and samplers, guidance and objectives pass the control through like any extra
model input. Without a control it computes the UNet exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .specs import DenoiserSpec, image_shape


class ControlNetDenoiser(nn.Module):
    """A UNet whose encoder and middle features get a ControlNet's residuals for the control
    image ``controlnet_cond`` of each call, scaled by ``conditioning_scale``."""

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
        ``(B, conditioning_channels, H, W)`` is given."""
        if controlnet_cond is None:
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)
        channels = self.controlnet.config.conditioning_channels
        if controlnet_cond.ndim != 4 or controlnet_cond.shape[1] != channels:
            raise ValueError(f"controlnet_cond must be (batch, {channels}, H, W), got {tuple(controlnet_cond.shape)}")
        if controlnet_cond.shape[0] != sample.shape[0]:
            raise ValueError(f"controlnet_cond has {controlnet_cond.shape[0]} rows for a batch of {sample.shape[0]}")
        control = controlnet_cond.to(sample.device, sample.dtype)
        down, mid = self.controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                    controlnet_cond=control, conditioning_scale=self.conditioning_scale,
                                    return_dict=False)
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                         down_block_additional_residuals=down, mid_block_additional_residual=mid, **kwargs)


#: how a backbone calls a :class:`ControlNetDenoiser`: a text-conditioned UNet that also takes ``controlnet_cond``
CONTROLNET_DENOISER_SPEC = DenoiserSpec(inputs=frozenset({"controlnet_cond"}), sample_shape=image_shape)


def controlnet_from_unet(unet: nn.Module, conditioning_channels: int = 3,
                         conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)) -> nn.Module:
    """diffusers' ``ControlNetModel`` initialised from ``unet``: its encoder weights copied, its
    output convolutions zero (so training starts from the UNet's own outputs)."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_channels=conditioning_channels,
                                     conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels))


__all__ = ["CONTROLNET_DENOISER_SPEC", "ControlNetDenoiser", "controlnet_from_unet"]
