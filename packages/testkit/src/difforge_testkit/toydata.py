"""A toy captioned image folder: coloured squares and circles on a plain background."""

from __future__ import annotations

import json
import random
from pathlib import Path

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle")


def write_toy_images(path: str | Path, count: int = 16, resolution: int = 32, seed: int = 0,
                     colours: tuple[str, ...] | None = None, shapes: tuple[str, ...] | None = None) -> Path:
    """Write ``count`` PNGs plus ``metadata.jsonl`` captions ("a red circle") to ``path``."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        colour = rng.choice(colours or tuple(COLOURS))
        shape = rng.choice(shapes or SHAPES)
        image = Image.new("RGB", (resolution, resolution), (245, 245, 245))
        draw = ImageDraw.Draw(image)
        size = rng.randint(resolution // 3, resolution // 2)
        x, y = rng.randint(0, resolution - size), rng.randint(0, resolution - size)
        box = (x, y, x + size, y + size)
        (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
        name = f"{i:04d}.png"
        image.save(root / name)
        rows.append({"file_name": name, "text": f"a {colour} {shape}"})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


class ToyTrajectories:
    """Action chunks that go from the origin towards an observed goal direction: item
    ``{"sample": (2, horizon) in [-0.8, 0.8], "condition": (cos θ, sin θ)}`` with θ drawn per item.
    The exact answer to "where should the chunk end?" is ``0.8 * condition``."""

    def __init__(self, count: int = 64, horizon: int = 16, seed: int = 0) -> None:
        import torch

        g = torch.Generator().manual_seed(seed)
        angles = torch.rand(count, generator=g) * 2 * torch.pi
        self.goals = torch.stack([angles.cos(), angles.sin()], dim=1)
        self.ramp = torch.linspace(0, 0.8, horizon)

    def __len__(self) -> int:
        return len(self.goals)

    def __getitem__(self, index: int) -> dict:
        goal = self.goals[index]
        return {"sample": goal[:, None] * self.ramp[None, :], "condition": goal}


class ToyClips:
    """Clips ``(3, frames, size, size)`` in [-1, 1] of a white square moving left or right on
    black, captioned "a square moving left" / "a square moving right"."""

    def __init__(self, count: int = 16, frames: int = 4, size: int = 8, seed: int = 0) -> None:
        import torch

        g = torch.Generator().manual_seed(seed)
        self.right = (torch.rand(count, generator=g) < 0.5).tolist()
        self.rows = torch.randint(0, size - 2, (count,), generator=g).tolist()
        self.frames, self.size = frames, size

    def __len__(self) -> int:
        return len(self.right)

    def __getitem__(self, index: int) -> dict:
        import torch

        clip = -torch.ones(3, self.frames, self.size, self.size)
        row = self.rows[index]
        for f in range(self.frames):
            col = f * 2 if self.right[index] else self.size - 2 - f * 2
            clip[:, f, row : row + 2, col : col + 2] = 1.0
        return {"sample": clip, "caption": f"a square moving {'right' if self.right[index] else 'left'}"}
