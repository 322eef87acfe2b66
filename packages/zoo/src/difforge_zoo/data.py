"""The shapes world as a training dataset."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from .shapes import random_scene


class ShapesOptions(BaseModel):
    """Options of the ``shapes`` dataset."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(1024, ge=1)
    seed: int = 0
    split: str = "train"
    style: str | list[str] = "plain"
    num_objects: int | None = Field(None, ge=1, le=3)
    shapes: list[str] | None = None
    colours: list[str] | None = None


class ShapesDataset(Dataset):
    """``count`` generated scenes; item ``i`` depends only on ``(seed, i)``.

    Items: ``{"pixel_values": (3, 32, 32) in [-1, 1], "caption": str}``. A list of ``style``
    values takes them in turn (item ``i`` has style ``style[i % len(style)]``).
    """

    options_model = ShapesOptions

    def __init__(self, **options) -> None:
        self.options = ShapesOptions(**options)

    def __len__(self) -> int:
        return self.options.count

    def __getitem__(self, index: int):
        o = self.options
        style = o.style if isinstance(o.style, str) else o.style[index % len(o.style)]
        scene = random_scene(o.seed * 1_000_003 + index, split=o.split, num_objects=o.num_objects,
                             style=style, shapes=o.shapes, colours=o.colours)
        pixels = torch.from_numpy(scene.image).permute(2, 0, 1).float() / 127.5 - 1.0
        return {"pixel_values": pixels, "caption": scene.caption}
