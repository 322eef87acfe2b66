"""The shapes world's restoration task: 4x super-resolution. A scene is area-downsampled to
8x8 and bicubically upsampled back to 32x32 (the degraded image, the condition of shapes-sr-mr
and the classic non-learned reconstruction); the drawn scene is the exact ground truth."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

FACTOR = 4


def scene_pixels(scenes: Sequence) -> Tensor:
    """Scenes' images as a ``(B, 3, 32, 32)`` batch in [-1, 1]."""
    import numpy as np

    images = np.stack([scene.image for scene in scenes])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def degrade(images: Tensor, factor: int = FACTOR) -> Tensor:
    """The degraded image of a ``(B, 3, H, W)`` batch: area-downsampled by ``factor``, then
    bicubically upsampled to ``H x W`` (clamped to [-1, 1])."""
    small = F.avg_pool2d(images, factor)
    return F.interpolate(small, size=images.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)


def psnr(images: Tensor, reference: Tensor) -> Tensor:
    """Per-image PSNR (dB) of ``[-1, 1]`` batches."""
    mse = ((images.clamp(-1, 1) - reference) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


#: the scene seed of the held-out restoration scenes (training draws scenes by seed 0, 1, 2, ...,
#: :func:`difforge_zoo.shapes.generate` puts this seed's scenes at 7_000_021 and on)
EVAL_SEED = 7


def evaluation_task(count: int, seed: int = EVAL_SEED):
    """``count`` held-out scenes, their clean images and their degraded images."""
    from .shapes import generate

    scenes = generate(count, seed=seed)
    clean = scene_pixels(scenes)
    return scenes, clean, degrade(clean)


def restoration_scores(images: Tensor, clean: Tensor, scenes: Sequence) -> dict[str, list]:
    """Per scene: the PSNR of a restored image against the clean one, and whether the analytic
    scorer recovers the scene from it exactly (every object's shape, colour and position)."""
    from difforge.plugin_api import to_uint8

    from .scorer import detect, scene_matches

    recovered = [scene_matches(scene, detect(image)) for scene, image in zip(scenes, to_uint8(images), strict=True)]
    return {"psnr": psnr(images, clean).tolist(), "recovered": recovered}
