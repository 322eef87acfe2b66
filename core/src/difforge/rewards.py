"""Rewards: score generated samples (and their prompts).

A reward maps a batch of samples ``(N, ...)`` of its domain (images, spectrograms, clips,
action chunks) and their prompts to scores ``(N,)``. It declares whether gradients flow from
the scores to the samples (``differentiable``), which reward-backpropagation methods (AlignProp)
require, and whether it needs the prompts. :class:`ImageReward` adds the image shape check.
Plugins register more through ``difforge_register_rewards``.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor


class Reward(ABC):
    """Maps samples ``(N, ...)`` (decoded, in [-1, 1]) and their prompts to scores ``(N,)``.

    ``differentiable`` says whether gradients flow from the scores to the samples (needed by
    reward-backpropagation methods); ``needs_prompts`` whether ``prompts`` must be given.
    """

    name: str = ""
    differentiable: bool = False
    needs_prompts: bool = False

    def __call__(self, images: Tensor, prompts: Sequence[str] | None = None) -> Tensor:
        self.check(images, prompts)
        scores = self.score(images, prompts)
        return scores if self.differentiable else scores.detach()

    def check(self, images: Tensor, prompts: Sequence[str] | None) -> None:
        """Reject what no reward can score (not a float batch, prompts missing or miscounted)
        with a one-line message naming the reward; domain rewards add their shape checks."""
        if not isinstance(images, Tensor) or images.ndim < 2:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"reward {self.name!r}: expected a batch of samples (N, ...), got {shape}")
        if not images.is_floating_point():
            raise ValueError(f"reward {self.name!r}: expected float samples in [-1, 1], got {images.dtype}")
        if prompts is None and self.needs_prompts:
            raise ValueError(f"reward {self.name!r}: needs the prompts the images were generated from")
        if prompts is not None and len(prompts) != len(images):
            raise ValueError(f"reward {self.name!r}: {len(images)} images but {len(prompts)} prompts")

    @abstractmethod
    def score(self, images: Tensor, prompts: Sequence[str] | None) -> Tensor:
        """The scores, one per image."""

    def example_inputs(self) -> tuple[Tensor, list[str] | None]:
        """A small valid input ``(samples, prompts)``; conformance checks
        (``difforge_testkit.check_plugin``) score it. Domain rewards override it."""
        return torch.zeros(2, 3, 16, 16), ["a prompt", "another"]


class ImageReward(Reward):
    """A reward on decoded images ``(N, C, H, W)`` with 1 or 3 channels."""

    def check(self, images: Tensor, prompts: Sequence[str] | None) -> None:
        """The base checks, then the image shape (decoded images, not latents)."""
        super().check(images, prompts)
        if images.ndim != 4:
            raise ValueError(f"reward {self.name!r}: expected images (N, C, H, W), got {tuple(images.shape)}")
        if images.shape[1] not in (1, 3):
            raise ValueError(f"reward {self.name!r}: expected 1 or 3 channels (decoded images, not latents), "
                             f"got {images.shape[1]}")


def jpeg_kilobytes(images: Tensor, quality: int = 95) -> Tensor:
    """The JPEG size (kB at ``quality``) of each image in [-1, 1]."""
    from PIL import Image

    from .sampling.grid import to_uint8

    sizes = []
    for array in to_uint8(images.detach().float().cpu()):
        buffer = io.BytesIO()
        image = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
        image.save(buffer, format="JPEG", quality=quality)
        sizes.append(buffer.tell() / 1000.0)
    return torch.tensor(sizes)


class JpegCompressibility(ImageReward):
    """Negative JPEG size in kB, as in DDPO (Black et al. 2023); not differentiable."""

    name = "jpeg-compressibility"

    def __init__(self, quality: int = 95) -> None:
        self.quality = quality

    def score(self, images, prompts=None):
        return -jpeg_kilobytes(images, self.quality)


class JpegIncompressibility(JpegCompressibility):
    """JPEG size in kB (DDPO's incompressibility task); not differentiable."""

    name = "jpeg-incompressibility"

    def score(self, images, prompts=None):
        return jpeg_kilobytes(images, self.quality)


class Colourfulness(ImageReward):
    """The aesthetic proxy: the Hasler–Süsstrunk colourfulness metric (2003),
    ``sqrt(σ_rg² + σ_yb²) + 0.3 sqrt(μ_rg² + μ_yb²)`` on RGB in [0, 1], with
    ``rg = R − G`` and ``yb = (R + G)/2 − B``. Differentiable; no prompts needed.

    It stands in for the LAION aesthetic predictor of DDPO/AlignProp, which cannot be
    downloaded here: like it, it is a prompt-free image score a model can be tuned to raise.
    """

    name = "colourfulness"
    differentiable = True

    def score(self, images, prompts=None):
        if images.shape[1] != 3:
            raise ValueError(f"reward {self.name!r}: needs RGB images, got {images.shape[1]} channel(s)")
        rgb = (images.float().clamp(-1, 1) + 1) / 2
        r, g, b = rgb.unbind(1)
        rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
        spread = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False) + 1e-8).sqrt()
        mean = (rg.mean(1) ** 2 + yb.mean(1) ** 2 + 1e-8).sqrt()
        return spread + 0.3 * mean

