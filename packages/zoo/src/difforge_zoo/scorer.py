"""An analytic scorer for the shapes world: recovers shapes, colours, positions and counts by
pixel analysis (palette assignment, connected components, shape geometry). No learned model.

``score(images, prompts)`` gives the prompt-alignment reward in [0, 1] and per-attribute
accuracies; :func:`detect` returns the objects found in one image.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .shapes import ANCHORS_BY_COUNT, COLOURS, POSITION_PHRASES, SHAPES, SIZES_BY_COUNT, article

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_PALETTE_NAMES = list(COLOURS)
MIN_SATURATION = 60.0   # palette colours have max-min channel spread > 100; greys ~0
MAX_PALETTE_DISTANCE = 110.0
MIN_AREA = 12


@dataclass(frozen=True)
class Detection:
    """One object found in an image."""

    shape: str
    colour: str
    position: str
    size: str
    center: tuple[float, float]
    area: int
    extent: int
    features: tuple[float, float, float]  # fill ratio, solidity, vertical balance


def _to_uint8_hwc(image) -> np.ndarray:
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if array.ndim != 3:
        raise ValueError(f"scorer: expected one image (H, W, 3) or (3, H, W), got shape {array.shape}")
    if array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    if array.dtype != np.uint8:
        array = np.clip((array.astype(np.float32) + 1) * 127.5, 0, 255).round().astype(np.uint8)
    return array


def _features(mask: np.ndarray) -> tuple[float, float, float, tuple[float, float], int, int]:
    from scipy.spatial import ConvexHull, QhullError

    ys, xs = np.nonzero(mask)
    area = len(ys)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = y1 - y0, x1 - x0
    fill = area / float(h * w)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        solidity = area / ConvexHull(corners).volume
    except QhullError:
        solidity = 1.0
    balance = (ys.mean() + 0.5 - (y0 + y1) / 2) / h
    return fill, solidity, balance, (float(x0 + x1) / 2, float(y0 + y1) / 2), int(h), int(w)


def classify_shape(fill: float, solidity: float, balance: float) -> str:
    """Shape from geometry: stars are concave, squares fill their box, triangles and hearts
    carry their mass low and high respectively, circles are what remains."""
    # thresholds sit in the gaps measured on the generator's own scenes (see tests)
    if solidity < 0.72:
        return "star"
    if fill > 0.9:
        return "square"
    if balance > 0.08:
        return "triangle"
    if balance < -0.05:
        return "heart"
    return "circle"


def _position(center: tuple[float, float], count: int) -> str:
    anchors = ANCHORS_BY_COUNT[min(max(count, 1), 3)]
    return min(anchors, key=lambda name: (anchors[name][0] - center[0]) ** 2 + (anchors[name][1] - center[1]) ** 2)


def detect(image) -> list[Detection]:
    """Objects in one image (uint8 HWC, or float CHW in [-1, 1]), left to right."""
    from scipy import ndimage

    rgb = _to_uint8_hwc(image).astype(np.float32)
    saturation = rgb.max(-1) - rgb.min(-1)
    distances = np.linalg.norm(rgb[:, :, None, :] - _PALETTE[None, None], axis=-1)
    nearest = distances.argmin(-1)
    foreground = (saturation > MIN_SATURATION) & (distances.min(-1) < MAX_PALETTE_DISTANCE)
    found = []
    for index, name in enumerate(_PALETTE_NAMES):
        mask = foreground & (nearest == index)
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        for label in range(1, n + 1):
            component = labels == label
            if component.sum() < MIN_AREA:
                continue
            fill, solidity, balance, center, h, w = _features(component)
            found.append((name, component.sum(), fill, solidity, balance, center, max(h, w)))
    detections = []
    sizes = SIZES_BY_COUNT[min(max(len(found), 1), 3)]
    # three objects in a row are always small
    size_threshold = (sizes["small"][1] + sizes["large"][0]) / 2 if "large" in sizes else float("inf")
    for name, area, fill, solidity, balance, center, extent in found:
        size = "large" if extent > size_threshold else "small"
        detections.append(Detection(
            shape=classify_shape(fill, solidity, balance), colour=name, position=_position(center, len(found)),
            size=size, center=center, area=int(area), extent=int(extent),
            features=(round(fill, 3), round(solidity, 3), round(balance, 3)),
        ))
    return sorted(detections, key=lambda d: (d.center[0], d.center[1]))


_OBJECT = re.compile(
    r"(?:an?\s+)?(?:(?P<size>small|large)\s+)?(?P<colour>" + "|".join(COLOURS) + r")\s+(?P<shape>"
    + "|".join(SHAPES) + r"|\w+)(?:\s+(?P<position>on the left|on the right|at the top|at the bottom|in the centre))?"
)
_PHRASE_TO_POSITION = {"on the left": "left", "on the right": "right", "at the top": "top",
                       "at the bottom": "bottom", "in the centre": "centre"}


@dataclass(frozen=True)
class Expected:
    """One object a prompt asks for (``None``: the prompt does not say)."""

    colour: str
    shape: str
    position: str | None
    size: str | None


def parse_prompt(prompt: str) -> list[Expected]:
    """The objects a shapes-world prompt describes (words outside the grammar are ignored)."""
    found = []
    for match in _OBJECT.finditer(prompt.lower()):
        position = match.group("position")
        found.append(Expected(match.group("colour"), match.group("shape"),
                              _PHRASE_TO_POSITION.get(position) if position else None, match.group("size")))
    return found


def _agreement(expected: Expected, detection: Detection) -> tuple[int, int]:
    checks = [expected.colour == detection.colour, expected.shape == detection.shape]
    if expected.position is not None:
        checks.append(expected.position == detection.position)
    if expected.size is not None:
        checks.append(expected.size == detection.size)
    return sum(checks), len(checks)


def match(expected: Sequence[Expected], detections: Sequence[Detection]) -> list[tuple[Expected, Detection | None]]:
    """Pair each expected object with the detection that agrees with it most (each used once)."""
    free = list(detections)
    pairs = []
    for exp in expected:
        if not free:
            pairs.append((exp, None))
            continue
        best = max(free, key=lambda d: _agreement(exp, d)[0])
        free.remove(best)
        pairs.append((exp, best))
    return pairs


def alignment(image, prompt: str) -> dict[str, float]:
    """How well one image matches its prompt: ``reward`` in [0, 1] (attributes satisfied over
    attributes asked for plus extra objects), attribute hits, and ``full`` (everything right)."""
    expected = parse_prompt(prompt)
    detections = detect(image)
    if not expected:
        return {"reward": 0.0, "full": 0.0, "count": float(not detections)}
    pairs = match(expected, detections)
    hits = total = 0
    result = {"colour": 0.0, "shape": 0.0, "position": 0.0, "size": 0.0}
    asked = {"position": 0, "size": 0}
    for exp, det in pairs:
        if det is not None:
            ok, n = _agreement(exp, det)
        else:
            ok, n = 0, 2 + (exp.position is not None) + (exp.size is not None)
        hits, total = hits + ok, total + n
        if det is not None:
            result["colour"] += exp.colour == det.colour
            result["shape"] += exp.shape == det.shape
            if exp.position is not None:
                result["position"] += exp.position == det.position
            if exp.size is not None:
                result["size"] += exp.size == det.size
        asked["position"] += exp.position is not None
        asked["size"] += exp.size is not None
    extra = max(0, len(detections) - len(expected))
    n = len(expected)
    out = {
        "reward": hits / (total + extra),
        "colour": result["colour"] / n,
        "shape": result["shape"] / n,
        "count": float(len(detections) == n),
        "full": float(hits == total and len(detections) == n),
    }
    for key in ("position", "size"):
        if asked[key]:
            out[key] = result[key] / asked[key]
    return out


def score(images, prompts: Sequence[str]) -> dict[str, object]:
    """Score a batch: per-image ``reward`` list and mean per-attribute accuracies."""
    if len(images) != len(prompts):
        raise ValueError(f"scorer: {len(images)} images but {len(prompts)} prompts")
    rows = [alignment(image, prompt) for image, prompt in zip(images, prompts, strict=True)]
    summary: dict[str, object] = {"reward": [r["reward"] for r in rows]}
    for key in ("reward", "colour", "shape", "position", "size", "count", "full"):
        values = [r[key] for r in rows if key in r]
        if values:
            summary[f"mean_{key}" if key == "reward" else f"{key}_accuracy"] = sum(values) / len(values)
    return summary


#: the order in which the generator's captions name positions (left before right, top before bottom)
_CAPTION_ORDER = {"left": 0, "top": 0, "centre": 1, "right": 2, "bottom": 2}


def describe(image) -> str:
    """A caption of one image in the shapes world's grammar, from what :func:`detect` finds
    (e.g. "a blue circle on the left and a red triangle on the right"; "" when it finds nothing)."""
    detections = sorted(detect(image), key=lambda d: (_CAPTION_ORDER[d.position], d.center))
    if not detections:
        return ""
    if len(detections) == 1 and detections[0].position == "centre":
        phrases = [f"{article(detections[0].colour)} {detections[0].colour} {detections[0].shape}"]
    else:
        phrases = [f"{article(d.colour)} {d.colour} {d.shape} {POSITION_PHRASES[d.position]}" for d in detections]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def scene_matches(scene, detections: Sequence[Detection]) -> bool:
    """Whether detections recover a generated scene exactly (shape, colour, position of each object)."""
    truth = sorted((o.shape, o.colour, o.position) for o in scene.objects)
    found = sorted((d.shape, d.colour, d.position) for d in detections)
    return truth == found
