"""Rewards: score images (and prompts). The alignment work builds on this protocol."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor


class Reward(ABC):
    """Maps images ``(N, C, H, W)`` in [-1, 1] and their prompts to scores ``(N,)``.

    ``differentiable`` says whether gradients flow from the scores to the images (needed by
    reward-backpropagation methods).
    """

    name: str = ""
    differentiable: bool = False

    def __call__(self, images: Tensor, prompts: Sequence[str] | None = None) -> Tensor:
        self.check(images, prompts)
        return self.score(images, prompts)

    def check(self, images: Tensor, prompts: Sequence[str] | None) -> None:
        """Reject wrong shapes/dtypes with a one-line message naming the reward."""
        if not isinstance(images, Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"reward {self.name!r}: expected images (N, C, H, W), got {shape}")
        if not images.is_floating_point():
            raise ValueError(f"reward {self.name!r}: expected float images in [-1, 1], got {images.dtype}")
        if prompts is not None and len(prompts) != len(images):
            raise ValueError(f"reward {self.name!r}: {len(images)} images but {len(prompts)} prompts")

    @abstractmethod
    def score(self, images: Tensor, prompts: Sequence[str] | None) -> Tensor:
        """The scores, one per image."""


class JpegCompressibility(Reward):
    """Negative JPEG size in kB, as in DDPO (Black et al. 2023); not differentiable."""

    name = "jpeg-compressibility"

    def __init__(self, quality: int = 95) -> None:
        self.quality = quality

    def score(self, images, prompts=None):
        from PIL import Image

        from .sampling.grid import to_uint8

        sizes = []
        for array in to_uint8(images):
            buffer = io.BytesIO()
            Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
                buffer, format="JPEG", quality=self.quality
            )
            sizes.append(-buffer.tell() / 1000.0)
        return torch.tensor(sizes)


BUILTIN_REWARDS = {JpegCompressibility.name: JpegCompressibility()}
