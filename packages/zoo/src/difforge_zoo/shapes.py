"""The shapes world: seeded images of 1-3 coloured shapes with captions and full ground truth.

A scene is drawn without anti-aliasing on a 32x32 canvas, so every foreground pixel carries
exactly one palette colour and the analytic scorer (:mod:`difforge_zoo.scorer`) can recover
the scene. Captions follow a small grammar::

    a [small|large] <colour> <shape> [on the left|on the right|at the top|at the bottom|in the centre]
    <object> and <object>
    <object>, <object> and <object>

Splits: the base shapes (circle, square, triangle) in every colour pair except the held-out
combinations :data:`HELD_OUT_COMBINATIONS` form pretraining data; held-out combinations measure
compositional generalisation; the held-out concepts (star, heart) and the textured background
styles never appear in pretraining and are used for personalisation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

RESOLUTION = 32
BACKGROUND = (236, 236, 236)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (34, 160, 60),
    "blue": (40, 70, 215),
    "yellow": (235, 200, 30),
    "purple": (140, 50, 175),
    "orange": (245, 130, 20),
}
BASE_SHAPES = ("circle", "square", "triangle")
HELD_OUT_SHAPES = ("star", "heart")
SHAPES = BASE_SHAPES + HELD_OUT_SHAPES
#: (colour, shape) pairs never shown in pretraining, to measure compositional generalisation
HELD_OUT_COMBINATIONS = frozenset({("red", "triangle"), ("blue", "circle"), ("yellow", "square"),
                                   ("purple", "triangle"), ("orange", "circle"), ("green", "square")})

#: anchor (x, y) of each position, in pixels of a 32x32 canvas
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (8.0, 16.0), "right": (24.0, 16.0), "top": (16.0, 8.0), "bottom": (16.0, 24.0), "centre": (16.0, 16.0),
}
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "centre": "in the centre"}
#: extent range (pixels) of each size, by the number of objects in the scene (so they never touch)
SIZES = {"small": (9, 10), "large": (13, 15)}
SIZES_BY_COUNT = {1: SIZES, 2: {"small": (8, 9), "large": (11, 12)}, 3: {"small": (8, 9)}}
#: anchors are spread wider for three objects in a row
ANCHORS_BY_COUNT = {1: POSITIONS, 2: POSITIONS, 3: {**POSITIONS, "left": (5.0, 16.0), "right": (27.0, 16.0)}}
JITTER_BY_COUNT = {1: 2.5, 2: 1.5, 3: 0.3}
STYLES = ("plain", "stripes", "dots")
LAYOUTS = {1: [("centre",), ("left",), ("right",), ("top",), ("bottom",)],
           2: [("left", "right"), ("top", "bottom")],
           3: [("left", "centre", "right")]}


def article(word: str) -> str:
    """"a" or "an" before ``word``."""
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class ShapeObject:
    """One shape of a scene and where it was drawn (box = x0, y0, x1, y1 inclusive-exclusive)."""

    shape: str
    colour: str
    position: str
    size: str
    center: tuple[float, float]
    extent: int
    box: tuple[int, int, int, int]

    def phrase(self, with_size: bool = False, with_position: bool = True) -> str:
        """The caption fragment for this object, e.g. "a red circle on the left"."""
        words = ([self.size] if with_size else []) + [self.colour, self.shape]
        words.insert(0, article(words[0]))
        if with_position:
            words.append(POSITION_PHRASES[self.position])
        return " ".join(words)


@dataclass
class Scene:
    """An image with its caption and ground truth."""

    image: np.ndarray  # (32, 32, 3) uint8
    caption: str
    objects: list[ShapeObject] = field(default_factory=list)
    style: str = "plain"

    def truth(self) -> dict:
        """The ground truth as plain data (for JSON)."""
        return {"caption": self.caption, "style": self.style, "objects": [asdict(o) for o in self.objects]}


def shape_polygon(shape: str, cx: float, cy: float, extent: int) -> list[tuple[float, float]] | None:
    """Vertices of a polygonal shape of width/height ``extent`` centred at (cx, cy); None for circles."""
    r = extent / 2
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.42
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle) + r * 0.1))
        return points
    if shape == "heart":
        points = []
        for i in range(48):
            t = 2 * math.pi * i / 48
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            points.append((cx + x / 33 * extent, cy + (y - 2.5) / 31 * extent))
        return points
    if shape == "circle":
        return None
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _background(style: str, rng: random.Random):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (RESOLUTION, RESOLUTION), BACKGROUND)
    draw = ImageDraw.Draw(image)
    ink = (205, 205, 205)
    if style == "stripes":
        offset = rng.randint(0, 3)
        for x in range(-RESOLUTION, RESOLUTION, 4):
            draw.line([(x + offset, 0), (x + offset + RESOLUTION, RESOLUTION)], fill=ink)
    elif style == "dots":
        offset = rng.randint(0, 3)
        for y in range(offset, RESOLUTION, 4):
            for x in range(offset, RESOLUTION, 4):
                draw.point((x, y), fill=ink)
    elif style != "plain":
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    return image


def draw_scene(objects: Sequence[tuple[str, str, str, str]], seed: int = 0, style: str = "plain",
               with_size: bool = False, with_position: bool | None = None) -> Scene:
    """Draw objects given as ``(shape, colour, position, size)``; small random jitter from ``seed``."""
    from PIL import ImageDraw

    rng = random.Random(seed)
    image = _background(style, rng)
    draw = ImageDraw.Draw(image)
    drawn = []
    count = len(objects)
    if not 1 <= count <= 3:
        raise ValueError(f"a scene holds 1 to 3 objects, got {count}")
    for shape, colour, position, size in objects:
        if colour not in COLOURS:
            raise ValueError(f"unknown colour {colour!r}; known: {', '.join(COLOURS)}")
        if count == 3:
            size = "small"
        lo, hi = SIZES_BY_COUNT[count][size]
        extent = rng.randint(lo, hi)
        ax, ay = ANCHORS_BY_COUNT[count][position]
        jitter = JITTER_BY_COUNT[count]
        half = extent / 2
        cx = min(max(ax + rng.uniform(-jitter, jitter), half), RESOLUTION - half)
        cy = min(max(ay + rng.uniform(-jitter, jitter), half), RESOLUTION - half)
        polygon = shape_polygon(shape, cx, cy, extent)
        if polygon is None:
            r = extent / 2
            draw.ellipse([cx - r, cy - r, cx + r - 1, cy + r - 1], fill=COLOURS[colour])
        else:
            draw.polygon(polygon, fill=COLOURS[colour])
        box = (int(round(cx - extent / 2)), int(round(cy - extent / 2)),
               int(round(cx + extent / 2)), int(round(cy + extent / 2)))
        drawn.append(ShapeObject(shape, colour, position, size, (cx, cy), extent, box))
    if with_position is None:
        with_position = len(objects) > 1 or position != "centre"
    phrases = [o.phrase(with_size, with_position) for o in drawn]
    caption = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return Scene(np.asarray(image, dtype=np.uint8).copy(), caption, drawn, style)


def in_split(colour: str, shape: str, split: str) -> bool:
    """Whether a (colour, shape) pair belongs to ``split``: ``train`` (base shapes minus held-out
    combinations), ``heldout`` (the held-out combinations) or ``concepts`` (star, heart)."""
    if split == "train":
        return shape in BASE_SHAPES and (colour, shape) not in HELD_OUT_COMBINATIONS
    if split == "heldout":
        return (colour, shape) in HELD_OUT_COMBINATIONS
    if split == "concepts":
        return shape in HELD_OUT_SHAPES
    if split == "any":
        return True
    raise ValueError(f"unknown split {split!r}; known: train, heldout, concepts, any")


def random_scene(seed: int, split: str = "train", num_objects: int | None = None, style: str = "plain",
                 shapes: Sequence[str] | None = None, colours: Sequence[str] | None = None) -> Scene:
    """A random scene of ``split``; deterministic in ``seed``.

    ``split="heldout"`` puts a held-out combination in every scene; ``"concepts"`` draws only
    star/heart objects (or ``shapes``).
    """
    rng = random.Random(seed)
    count = num_objects or rng.choice([1, 1, 2, 2, 3])
    layout = rng.choice(LAYOUTS[count])
    shape_pool = list(shapes) if shapes else list(SHAPES if split in ("concepts", "any") else BASE_SHAPES)
    if split == "concepts" and not shapes:
        shape_pool = list(HELD_OUT_SHAPES)
    colour_pool = list(colours or COLOURS)
    objects = []
    for i, position in enumerate(layout):
        for _ in range(1000):
            colour, shape = rng.choice(colour_pool), rng.choice(shape_pool)
            wanted = split if (split != "heldout" or i == 0) else "train"
            if in_split(colour, shape, wanted) or shapes or colours:
                break
        objects.append((shape, colour, position, rng.choice(list(SIZES))))
    with_size = rng.random() < 0.3
    with_position = True if count > 1 else rng.random() < 0.7
    if count == 1 and not with_position:
        objects[0] = (objects[0][0], objects[0][1], "centre", objects[0][3])
    return draw_scene(objects, seed=rng.randrange(2**31), style=style, with_size=with_size, with_position=with_position)


def generate(count: int, seed: int = 0, split: str = "train", **options) -> list[Scene]:
    """``count`` scenes; scene ``i`` depends only on ``(seed, i)``."""
    return [random_scene(seed * 1_000_003 + i, split=split, **options) for i in range(count)]
