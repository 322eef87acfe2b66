"""The SC-Tuner adapter type.

Each decoder resnet of a diffusers UNet receives ``cat([h, skip])``; its tuner rewrites the
skip part as ``skip + T(skip [+ c])`` with ``T`` = 1x1 conv down, GELU, 1x1 conv up (zero
initialised, so training starts from the base model) and ``c`` the condition map's features at
that resolution (CSC-Tuner). Backpropagation only reaches the decoder, as in the paper. The
tuners are nonlinear, so they cannot be merged into the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layer_adapter import LayerAdapter
from ..tuned_layer import Tuner
from .config import ScTunerOptions


class ScTuner(Tuner):
    """Edits the last ``skip_channels`` input channels of a decoder resnet."""

    def __init__(self, skip_channels: int, hidden_ratio: float, condition_channels: int) -> None:
        super().__init__()
        hidden = max(1, int(round(skip_channels * hidden_ratio)))
        self.skip_channels = skip_channels
        self.down = nn.Conv2d(skip_channels, hidden, 1)
        self.up = nn.Conv2d(hidden, skip_channels, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.condition_proj = None
        if condition_channels:
            # not zero-initialised: ``up`` already starts at zero, and a second zero here would
            # leave the condition path without gradient at the start
            self.condition_proj = nn.Sequential(
                nn.Conv2d(condition_channels, hidden, 3, padding=1), nn.SiLU(), nn.Conv2d(hidden, skip_channels, 1))
        self.condition: Tensor | None = None  # bound for one forward pass by ScTunerAdapter.bind_inputs

    def edit_inputs(self, args, kwargs, scale):
        x = args[0] if args else kwargs["input_tensor"]
        h, skip = x[:, : -self.skip_channels], x[:, -self.skip_channels :]
        feature = skip
        if self.condition_proj is not None and self.condition is not None:
            feature = skip + self.condition_proj(_fit(self.condition, skip))
        edited = torch.cat([h, skip + scale * self.up(F.gelu(self.down(feature)))], dim=1)
        return ((edited, *args[1:]), kwargs) if args else (args, {**kwargs, "input_tensor": edited})


def _fit(condition: Tensor, like: Tensor) -> Tensor:
    """The condition resized to ``like``'s spatial size and repeated to its batch (CFG doubles it)."""
    condition = F.interpolate(condition.to(like.dtype), size=like.shape[-2:], mode="area")
    if condition.shape[0] != like.shape[0]:
        condition = condition.repeat(like.shape[0] // condition.shape[0], 1, 1, 1)
    return condition


def skip_resnets(model: nn.Module) -> dict[str, int]:
    """Decoder resnets of a diffusers UNet and how many of their input channels are skip features."""
    if not hasattr(model, "up_blocks"):
        raise ValueError(f"sc-tuner: {type(model).__name__} has no UNet decoder (up_blocks)")
    found, channels = {}, model.config.block_out_channels[-1]
    for i, block in enumerate(model.up_blocks):
        for j, resnet in enumerate(block.resnets):
            resnet = getattr(resnet, "base_layer", resnet)
            skip = resnet.conv1.in_channels - channels
            if skip <= 0:
                raise ValueError(f"sc-tuner: up_blocks.{i}.resnets.{j} has no skip input")
            found[f"up_blocks.{i}.resnets.{j}"] = skip
            channels = resnet.out_channels
    return found


class ScTunerAdapter(LayerAdapter):
    """SC-Tuner / CSC-Tuner on the skip connections of a UNet."""

    name = "sc-tuner"
    options_model = ScTunerOptions
    tuner_types = (ScTuner,)
    mergeable = False
    #: the condition map (N, C, H, W) of the CSC-Tuner (``condition_channels`` > 0)
    input_names = frozenset({"condition_map"})

    def build_tuners(self, model, options: ScTunerOptions):
        return {name: ScTuner(skip, options.hidden_ratio, options.condition_channels)
                for name, skip in skip_resnets(model).items()}

    def bind_inputs(self, model: nn.Module, adapter_name: str, inputs: Mapping[str, Any] | None) -> None:
        """The ``condition_map`` (N, C, H, W) the CSC-Tuners read in this forward pass."""
        condition = (inputs or {}).get("condition_map")
        if condition is not None:
            expected = self.options(model, adapter_name).condition_channels
            if not expected:
                raise ValueError(f"sc-tuner {adapter_name!r} takes no condition map (condition_channels: 0)")
            if condition.ndim != 4 or condition.shape[1] != expected:
                raise ValueError(f"sc-tuner {adapter_name!r}: condition_map must be (N, {expected}, H, W), "
                                 f"got {tuple(condition.shape)}")
        self.set_on_tuners(model, adapter_name, condition=condition)
