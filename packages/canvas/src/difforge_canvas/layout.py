"""Segment layouts for Composite Diffusion: a canvas size and free-form segments, each a prompt
and the region it covers (a box, or a mask image drawn by hand), read from YAML or JSON::

    size: [32, 64]                  # height, width in pixels
    segments:
      - prompt: a red circle
        box: [0, 0, 32, 32]         # left, top, right, bottom (pixels; right and bottom excluded)
      - prompt: a blue square
        mask: right_half.png        # relative to the layout file; non-black pixels are the segment
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor

from difforge.plugin_api import UsageError


class Segment(BaseModel):
    """One region of the layout and the prompt it follows."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    box: tuple[int, int, int, int] | None = Field(None, description="left, top, right, bottom in pixels")
    mask: str | None = Field(None, description="a mask image, relative to the layout file")

    @model_validator(mode="after")
    def _one_region(self) -> Segment:
        if (self.box is None) == (self.mask is None):
            raise ValueError("give exactly one of box and mask")
        if self.box is not None:
            left, top, right, bottom = self.box
            if not (0 <= left < right and 0 <= top < bottom):
                raise ValueError(f"box {list(self.box)} is empty or negative")
        return self


class Layout(BaseModel):
    """A canvas of ``size = (height, width)`` pixels split into ``segments``."""

    model_config = ConfigDict(extra="forbid")

    size: tuple[int, int]
    segments: list[Segment] = Field(min_length=1)
    #: the directory mask paths are relative to
    root: Path = Path(".")
    #: where the layout was read from, for error messages
    source: str | None = None

    @property
    def _name(self) -> str:
        return f"layout {self.source}" if self.source else "layout"

    @property
    def prompts(self) -> list[str]:
        return [segment.prompt for segment in self.segments]

    def masks(self) -> Tensor:
        """``(S, H, W)`` float masks, 1 inside a segment; every pixel must be in one at least."""
        height, width = self.size
        masks = torch.zeros(len(self.segments), height, width)
        for i, segment in enumerate(self.segments):
            if segment.box is not None:
                left, top, right, bottom = segment.box
                if right > width or bottom > height:
                    raise UsageError(f"{self._name}: segments[{i}].box {list(segment.box)} leaves the "
                                     f"{height}x{width} canvas")
                masks[i, top:bottom, left:right] = 1
            else:
                masks[i] = _read_mask(self.root / segment.mask, (height, width), f"{self._name}: segments[{i}].mask")
        uncovered = int((masks.sum(0) == 0).sum())
        if uncovered:
            raise UsageError(f"{self._name}: {uncovered} pixels of the {height}x{width} canvas are in no segment")
        return masks

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Each segment's bounding box ``(left, top, right, bottom)``, where it is scored."""
        found = []
        for mask in self.masks():
            rows, columns = torch.nonzero(mask, as_tuple=True)
            found.append((int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1))
        return found


def _read_mask(path: Path, size: tuple[int, int], field: str) -> Tensor:
    from PIL import Image

    try:
        image = Image.open(path).convert("L")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{field} {path}: not a readable image ({exc})") from None
    if image.size != (size[1], size[0]):
        raise UsageError(f"{field} {path}: {image.size[1]}x{image.size[0]} pixels, the canvas is "
                         f"{size[0]}x{size[1]}")
    return torch.from_numpy((np.asarray(image) > 0).astype(np.float32))


def read_layout(path: str | Path) -> Layout:
    """The layout in a YAML or JSON file; one line naming the file and the field if it is wrong."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"layout {path}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"layout {path}: expected a mapping with size and segments")
    try:
        return Layout(**data, root=path.parent, source=str(path))
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'layout'}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"layout {path}: {fields}") from None
