"""Image grids for sample previews."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..checkpointing import atomic_write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile images into one uint8 RGB array."""
    tiles = to_uint8(images)
    n, h, w, c = tiles.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = tile
    return grid


def save_grid(images: torch.Tensor, path: str | Path, columns: int | None = None) -> Path:
    """Save a PNG grid of images in [-1, 1] (atomically)."""
    from PIL import Image

    grid = make_grid(images, columns)
    if grid.shape[-1] == 1:
        grid = grid[..., 0]
    return atomic_write(path, lambda p: Image.fromarray(grid).save(p, format="PNG"))
