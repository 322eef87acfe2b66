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
