"""The example plugin's components: a reward, a dataset and an adapter type (BitFit)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from difforge.plugin_api import ImageReward, LayerAdapter, Tuner, base_module_names


class Brightness(ImageReward):
    """Mean brightness of each image, mapped from [-1, 1] to [0, 1]; differentiable."""

    name = "brightness"
    differentiable = True

    def score(self, images, prompts=None):
        return (images.float().mean(dim=(1, 2, 3)) + 1) / 2


class GradientOptions(BaseModel):
    """Options of the ``gradient-images`` dataset."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(32, ge=1)
    resolution: int = Field(32, ge=4)
    seed: int = 0


class GradientImages(Dataset):
    """Horizontal or vertical gradients between two random colours, captioned by direction."""

    options_model = GradientOptions

    def __init__(self, count: int = 32, resolution: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.colours = torch.rand(count, 2, 3, generator=g) * 2 - 1
        self.vertical = torch.rand(count, generator=g) < 0.5
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.colours)

    def __getitem__(self, index: int):
        start, end = self.colours[index]
        ramp = torch.linspace(0, 1, self.resolution)
        weights = ramp.reshape(1, -1, 1) if self.vertical[index] else ramp.reshape(1, 1, -1)
        pixels = start.reshape(3, 1, 1) * (1 - weights) + end.reshape(3, 1, 1) * weights
        pixels = pixels.expand(3, self.resolution, self.resolution).contiguous()
        caption = "a vertical gradient" if self.vertical[index] else "a horizontal gradient"
        return {"pixel_values": pixels, "caption": caption}


# -- a new adapter type: BitFit (Ben Zaken et al. 2021), only bias offsets train ----------------


class BitFitOptions(BaseModel):
    """Options of the ``bitfit`` adapter: module-name prefixes whose biases train."""

    model_config = ConfigDict(extra="forbid")

    blocks: list[str] = Field(default_factory=lambda: [""])


class BiasOffset(Tuner):
    """A trainable offset added to one layer's bias."""

    def __init__(self, bias: torch.Tensor) -> None:
        super().__init__()
        self.offset = torch.nn.Parameter(torch.zeros_like(bias))

    def edit_params(self, params, scale):
        return {**params, "bias": params["bias"] + scale * self.offset}


class BitFitAdapter(LayerAdapter):
    """BitFit: every bias in the chosen blocks gets a trainable offset; merges exactly."""

    name = "bitfit"
    options_model = BitFitOptions
    tuner_types = (BiasOffset,)

    def build_tuners(self, model, options):
        return {name: BiasOffset(module.bias) for name, module in base_module_names(model).items()
                if getattr(module, "bias", None) is not None and isinstance(module.bias, torch.nn.Parameter)
                and any(name.startswith(prefix) for prefix in options.blocks)}
