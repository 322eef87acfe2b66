"""A procedural world with exact ground truth: waves of a known frequency, and the analytic
reward that reads the frequency back."""

from __future__ import annotations

import math
import re

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from difforge.plugin_api import Reward

LENGTH = 64
FREQUENCIES = (1, 2, 3, 4)


def wave(frequency: int, phase: float) -> torch.Tensor:
    """``(1, LENGTH)``: ``0.8 sin(2π frequency x + phase)`` over one period of x."""
    x = torch.arange(LENGTH) / LENGTH
    return (0.8 * torch.sin(2 * math.pi * frequency * x + phase))[None]


def caption(frequency: int) -> str:
    """The caption of a wave: "a wave of frequency k"."""
    return f"a wave of frequency {frequency}"


def dominant_frequency(samples: torch.Tensor) -> torch.Tensor:
    """The largest non-constant FFT bin of each ``(N, 1, LENGTH)`` sample."""
    spectrum = torch.fft.rfft(samples.float().flatten(1), dim=1).abs()
    return spectrum[:, 1:].argmax(dim=1) + 1


class WavesOptions(BaseModel):
    """Options of the ``__domain__-waves`` dataset."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(256, ge=1)
    seed: int = 0


class WavesDataset(Dataset):
    """``count`` waves; item ``i`` depends only on ``(seed, i)``: ``{"sample": (1, LENGTH),
    "condition": one-hot frequency, "caption": str, "frequency": int}``."""

    options_model = WavesOptions

    def __init__(self, **options) -> None:
        self.options = WavesOptions(**options)

    def __len__(self) -> int:
        return self.options.count

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.options.seed * 1_000_003 + index)
        frequency = FREQUENCIES[int(torch.randint(0, len(FREQUENCIES), (1,), generator=g))]
        phase = float(torch.rand(1, generator=g)) * 2 * math.pi
        condition = torch.zeros(len(FREQUENCIES))
        condition[FREQUENCIES.index(frequency)] = 1.0
        return {"sample": wave(frequency, phase), "condition": condition, "caption": caption(frequency),
                "frequency": frequency}


class FrequencyReward(Reward):
    """1 where a sample's dominant frequency is the one its caption asks for, else 0. Not differentiable."""

    name = "__domain__-frequency"
    needs_prompts = True

    def check(self, images, prompts) -> None:
        super().check(images, prompts)
        if images.ndim != 3 or images.shape[1:] != (1, LENGTH):
            raise ValueError(f"reward {self.name!r}: expected waves (N, 1, {LENGTH}), got {tuple(images.shape)}")

    def example_inputs(self):
        """Two waves and their captions."""
        return torch.stack([wave(1, 0.0), wave(3, 1.0)]), [caption(1), caption(3)]

    def score(self, images, prompts=None):
        asked = torch.tensor([int(re.search(r"frequency (\d+)", p).group(1)) for p in prompts])
        return (dominant_frequency(images) == asked).float()
