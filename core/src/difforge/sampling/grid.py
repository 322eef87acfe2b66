"""Sample grids people can read: tiles upscaled to a readable size (nearest neighbour, so pixels
stay pixels), row labels (model, adapter, step, prompt), column labels (seed) and, where a scorer
judged the samples, a green or red mark per tile.

Samples become RGB tiles through a renderer: ``"auto"`` draws images ``(N, 1|3, H, W)`` and
video clips ``(N, C, T, H, W)`` (their frames side by side); a plugin registers renderers for
its own sample kinds (``difforge_register_renderers``: a spectrogram with its waveform, a mesh
turntable, a volume's three planes) and grids name them with ``renderer=``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..checkpointing import atomic_write

#: tiles are upscaled by an integer factor to at least this many pixels on their short side
READABLE_TILE = 96
LABEL_WIDTH = 26  # characters per line of a row label
RIGHT, WRONG = (34, 160, 64), (208, 40, 40)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).numpy()


def render_auto(samples: torch.Tensor) -> np.ndarray:
    """The built-in renderer: images ``(N, 1|3, H, W)`` as RGB tiles, video clips
    ``(N, C, T, H, W)`` as their frames side by side; values in [-1, 1]."""
    if samples.ndim == 5 and samples.shape[1] in (1, 3):
        n, c, t, h, w = samples.shape
        return render_auto(samples.permute(0, 1, 3, 2, 4).reshape(n, c, h, t * w))
    if samples.ndim != 4 or samples.shape[1] not in (1, 3):
        raise ValueError(f"the 'auto' renderer draws images (N, 1|3, H, W) or clips (N, C, T, H, W), got "
                         f"{tuple(samples.shape)}; name a renderer a plugin registers for these samples")
    tiles = to_uint8(samples)
    return np.repeat(tiles, 3, axis=-1) if tiles.shape[-1] == 1 else tiles


def render(samples: torch.Tensor, renderer: str | Callable = "auto") -> np.ndarray:
    """RGB uint8 tiles ``(N, H, W, 3)`` of ``samples`` by ``renderer`` (a registered name or a callable)."""
    if callable(renderer):
        return np.asarray(renderer(samples))
    if renderer == "auto":
        return render_auto(samples)
    from ..plugins import get_registry

    return np.asarray(get_registry("renderers").get(renderer)(samples))


def make_grid(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile images into one uint8 array at their own size, without labels."""
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


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def labelled_grid(
    tiles: np.ndarray,
    columns: int,
    *,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    verdicts: Sequence[bool | None] | None = None,
    tile_size: int = READABLE_TILE,
    title: str | None = None,
):
    """A PIL image of ``tiles`` (N, H, W, 3 uint8) in rows of ``columns``, each tile upscaled by
    the integer factor that brings its short side to ``tile_size``; ``row_labels`` (one per
    row) on the left, ``column_labels`` on top, ``verdicts`` (one per tile: True right, False
    wrong, None not judged) as a coloured mark in the tile's corner, ``title`` above."""
    from PIL import Image, ImageDraw

    tiles = np.asarray(tiles)
    n, h, w = tiles.shape[:3]
    rows = math.ceil(n / columns)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    if column_labels is not None and len(column_labels) != columns:
        raise ValueError(f"{len(column_labels)} column labels for {columns} columns")
    if verdicts is not None and len(verdicts) != n:
        raise ValueError(f"{len(verdicts)} verdicts for {n} tiles")
    scale = max(1, math.ceil(tile_size / min(h, w)))
    th, tw, pad = h * scale, w * scale, 4
    font_size = 13
    font, line = _font(font_size), font_size + 3
    wrapped = [textwrap.wrap(label, LABEL_WIDTH)[:4] or [""] for label in row_labels] if row_labels else []
    left = (int(max(font.getlength(text) for lines in wrapped for text in lines)) + 2 * pad) if wrapped else 0
    top = (line + pad) * (column_labels is not None) + (line + 2 * pad) * (title is not None)
    width = left + columns * (tw + pad) + pad
    if title is not None:
        width = max(width, int(_font(font_size + 2).getlength(title)) + 2 * pad)
    height = top + rows * (th + pad) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y0 = pad
    if title is not None:
        draw.text((pad, y0), title, fill="black", font=_font(font_size + 2))
        y0 += line + 2 * pad
    if column_labels is not None:
        for col, label in enumerate(column_labels):
            x = left + pad + col * (tw + pad)
            draw.text((x + tw / 2, y0), label, fill=(60, 60, 60), font=font, anchor="ma")
    for r, lines in enumerate(wrapped):
        y = top + pad + r * (th + pad) + max(0, (th - len(lines) * line) // 2)
        for k, text in enumerate(lines):
            draw.text((pad, y + k * line), text, fill="black", font=font)
    mark = max(6, th // 10)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, columns)
        x, y = left + pad + col * (tw + pad), top + pad + r * (th + pad)
        canvas.paste(Image.fromarray(np.ascontiguousarray(tile.repeat(scale, 0).repeat(scale, 1))), (x, y))
        verdict = verdicts[i] if verdicts is not None else None
        if verdict is not None:
            box = (x + tw - mark - 3, y + 3, x + tw - 3, y + mark + 3)
            draw.ellipse(box, fill=RIGHT if verdict else WRONG, outline="white", width=max(1, mark // 6))
    return canvas


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    columns: int | None = None,
    *,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    verdicts: Sequence[bool | None] | None = None,
    title: str | None = None,
    renderer: str | Callable = "auto",
    tile_size: int = READABLE_TILE,
) -> Path:
    """Save a readable PNG grid of samples (atomically): rendered by ``renderer``, upscaled to
    ``tile_size``, labelled and marked as in :func:`labelled_grid`. The one grid writer of
    difforge: training previews, ``difforge sample``, the quickstart and the plugins use it."""
    tiles = render(images, renderer)
    columns = columns or (len(tiles) // len(row_labels) if row_labels else math.ceil(math.sqrt(len(tiles))))
    grid = labelled_grid(tiles, columns, row_labels=row_labels, column_labels=column_labels, verdicts=verdicts,
                         tile_size=tile_size, title=title)
    return atomic_write(path, lambda p: grid.save(p, format="PNG"))


__all__ = ["READABLE_TILE", "labelled_grid", "make_grid", "render", "render_auto", "save_grid", "to_uint8"]
