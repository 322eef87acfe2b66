"""The compositional benchmark world: Winoground-style quadruples, ARO- and SugarCrepe-style
caption-option items and retention sets, drawn from the shapes world with exact ground truth.

Splits: ``heldout`` puts one of the zoo's held-out colour–shape combinations (never in the
diffusion model's data, nor in difforge-clip's training data) in every item; ``fresh`` uses only
combinations seen in training, in newly drawn scenes. Item ``i`` depends only on
``(seed, split, kind, i)``; the training data (the zoo's ``shapes`` dataset) draws its scenes
from a different seed stream.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from difforge_zoo.shapes import BASE_SHAPES, COLOURS, HELD_OUT_COMBINATIONS, LAYOUTS, draw_scene, random_scene

from .compositions import SWAPS, SceneObject, caption, replace_colour, replace_shape

SPLITS = ("heldout", "fresh")
WINOGROUND_KINDS = tuple(SWAPS)  # colour-swap, shape-swap, relation-swap
ARO_KINDS = ("vg-attribution", "vg-relation", "order")
SUGARCREPE_KINDS = ("replace-att", "replace-obj", "swap-att", "swap-obj", "add-obj")
#: seeds of benchmark scenes start here, far from the zoo dataset's ``seed * 1_000_003 + i``
SEED_BASE = 7_000_000_000


@dataclass
class Quadruple:
    """Two images and two captions with the same words; caption ``i`` describes image ``i``."""

    kind: str
    images: tuple[np.ndarray, np.ndarray]
    captions: tuple[str, str]
    objects: tuple[list[SceneObject], list[SceneObject]]


@dataclass
class OptionsItem:
    """One image and caption options, ``caption_options[true_index]`` the true one (ARO's and
    SugarCrepe's form)."""

    family: str
    kind: str
    image: np.ndarray
    caption_options: list[str]
    true_index: int
    objects: list[SceneObject] = field(default_factory=list)


@dataclass
class Benchmark:
    """Everything one evaluation reads."""

    split: str
    seed: int
    quadruples: list[Quadruple]
    options: list[OptionsItem]


def _held_out(objects: Sequence[SceneObject]) -> bool:
    return any((colour, shape) in HELD_OUT_COMBINATIONS for shape, colour, _, _ in objects)


def _two_objects(rng: random.Random, split: str) -> list[SceneObject]:
    """Two objects of distinct shapes and colours in a two-object layout; with ``heldout`` the
    first object is a held-out combination, with ``fresh`` none is (nor after any swap)."""
    for _ in range(10_000):
        layout = rng.choice(LAYOUTS[2])
        shapes = rng.sample(BASE_SHAPES, 2)
        colours = rng.sample(list(COLOURS), 2)
        size = rng.choice(["small", "large"])
        objects = [(shapes[0], colours[0], layout[0], size), (shapes[1], colours[1], layout[1], size)]
        variants = [objects, *(swap(objects) for swap in SWAPS.values())]
        if split == "heldout" and (colours[0], shapes[0]) in HELD_OUT_COMBINATIONS:
            return objects
        if split == "fresh" and not any(_held_out(v) for v in variants):
            return objects
    raise RuntimeError(f"no two-object scene found for split {split!r}")


def _draw(objects: Sequence[SceneObject], seed: int) -> np.ndarray:
    return draw_scene(objects, seed=seed).image


def quadruple(kind: str, index: int, seed: int = 0, split: str = "heldout") -> Quadruple:
    """Quadruple ``index`` of ``kind``: a scene, its caption, and the swapped scene and caption
    (the same jitter seed, so only the swapped binding differs)."""
    rng = random.Random(f"{SEED_BASE}/{seed}/{split}/{kind}/{index}")
    objects = _two_objects(rng, split)
    swapped = SWAPS[kind](objects)
    jitter = rng.randrange(2**31)
    return Quadruple(kind, (_draw(objects, jitter), _draw(swapped, jitter)),
                     (caption(objects), caption(swapped)), (objects, swapped))


def _shuffled(words: list[str], rng: random.Random) -> list[str]:
    for _ in range(20):
        out = rng.sample(words, len(words))
        if out != words:
            return out
    return words[::-1]


def order_perturbations(text: str, rng: random.Random) -> list[str]:
    """ARO's four word-order perturbations of a caption: nouns and adjectives shuffled, the other
    words shuffled, trigrams shuffled, words shuffled within each trigram."""
    words = text.split()
    content = {*COLOURS, *BASE_SHAPES, "left", "right", "top", "bottom", "centre"}
    slots = [i for i, w in enumerate(words) if w in content]
    others = [i for i, w in enumerate(words) if w not in content]

    def permute(indices: list[int]) -> str:
        out = list(words)
        for i, w in zip(indices, _shuffled([words[i] for i in indices], rng), strict=True):
            out[i] = w
        return " ".join(out)

    trigrams = [words[i:i + 3] for i in range(0, len(words), 3)]
    shuffled_trigrams = " ".join(w for t in _shuffled(trigrams, rng) for w in t)
    within = " ".join(w for t in trigrams for w in _shuffled(t, rng))
    return [permute(slots), permute(others), shuffled_trigrams, within]


def options_item(family: str, kind: str, index: int, seed: int = 0, split: str = "heldout") -> OptionsItem:
    """Item ``index`` of an ARO kind (``vg-attribution``, ``vg-relation``: options ``[false,
    true]`` as ARO's VG sets; ``order``: the true caption first, then its four perturbations, as
    ARO's COCO/Flickr order sets) or a SugarCrepe kind (``[positive, negative]``)."""
    rng = random.Random(f"{SEED_BASE}/{seed}/{split}/{family}/{kind}/{index}")
    objects = _two_objects(rng, split)
    image = _draw(objects, rng.randrange(2**31))
    true = caption(objects)
    if family == "aro":
        if kind == "order":
            return OptionsItem(family, kind, image, [true, *order_perturbations(true, rng)], 0, objects)
        swap = SWAPS["colour-swap" if kind == "vg-attribution" else "relation-swap"]
        return OptionsItem(family, kind, image, [caption(swap(objects)), true], 1, objects)
    if family != "sugarcrepe":
        raise ValueError(f"unknown family {family!r}; known: aro, sugarcrepe")
    if kind == "replace-att":
        negative = caption(replace_colour(objects, rng))
    elif kind == "replace-obj":
        negative = caption(replace_shape(objects, rng))
    elif kind == "swap-att":
        negative = caption(SWAPS["colour-swap"](objects))
    elif kind == "swap-obj":
        negative = caption(SWAPS["shape-swap"](objects))
    elif kind == "add-obj":
        extra = (rng.choice(BASE_SHAPES), rng.choice([c for c in COLOURS if c not in {o[1] for o in objects}]),
                 "centre", "small")
        negative = caption([*objects, extra])
    else:
        raise ValueError(f"unknown SugarCrepe kind {kind!r}; known: {', '.join(SUGARCREPE_KINDS)}")
    return OptionsItem(family, kind, image, [true, negative], 0, objects)


def build(count: int = 64, seed: int = 0, split: str = "heldout") -> Benchmark:
    """``count`` quadruples of each Winoground kind and ``count`` items of each ARO and SugarCrepe kind."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    quadruples = [quadruple(k, i, seed, split) for k in WINOGROUND_KINDS for i in range(count)]
    options = [options_item(family, k, i, seed, split)
               for family, kinds in (("aro", ARO_KINDS), ("sugarcrepe", SUGARCREPE_KINDS))
               for k in kinds for i in range(count)]
    return Benchmark(split, seed, quadruples, options)


@dataclass
class RetentionSet:
    """Single-object scenes with their shape and colour (zero-shot classification) and two-object
    scenes with their captions (retrieval)."""

    single_images: list[np.ndarray]
    single_shapes: list[str]
    single_colours: list[str]
    pair_images: list[np.ndarray]
    pair_captions: list[str]


def retention_set(count: int = 180, seed: int = 0) -> RetentionSet:
    """Fresh scenes of every base colour–shape combination (the held-out ones included, as the
    zoo's CLIP saw them in pretraining)."""
    singles = [random_scene(SEED_BASE + seed * 100_003 + i, split="any", num_objects=1, shapes=list(BASE_SHAPES))
               for i in range(count)]
    pairs = [random_scene(SEED_BASE + 50_000_000 + seed * 100_003 + i, split="any", num_objects=2,
                          shapes=list(BASE_SHAPES)) for i in range(count)]
    return RetentionSet([s.image for s in singles], [s.objects[0].shape for s in singles],
                        [s.objects[0].colour for s in singles], [s.image for s in pairs], [s.caption for s in pairs])


def export(benchmark: Benchmark, out: str | Path) -> Path:
    """Write the benchmark as files other tools read: ``images/*.png``, ``winoground.jsonl``
    (``id, image_0, image_1, caption_0, caption_1, tag`` as the Winoground dataset) and
    ``aro.json`` (items with ``image_options`` and ``caption_options``, plus ``true_index`` and
    ``family``/``kind``). Returns the folder."""
    from PIL import Image

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)

    def save(image: np.ndarray, name: str) -> str:
        Image.fromarray(image).save(out / "images" / name)
        return f"images/{name}"

    with open(out / "winoground.jsonl", "w") as f:
        for i, q in enumerate(benchmark.quadruples):
            row = {"id": i, "image_0": save(q.images[0], f"q{i:04d}_0.png"),
                   "image_1": save(q.images[1], f"q{i:04d}_1.png"),
                   "caption_0": q.captions[0], "caption_1": q.captions[1], "tag": q.kind}
            f.write(json.dumps(row) + "\n")
    items = [{"image_options": [save(item.image, f"o{i:04d}.png")], "caption_options": item.caption_options,
              "true_index": item.true_index, "family": item.family, "kind": item.kind}
             for i, item in enumerate(benchmark.options)]
    (out / "aro.json").write_text(json.dumps(items, indent=1))
    return out


__all__ = ["ARO_KINDS", "Benchmark", "OptionsItem", "Quadruple", "RetentionSet", "SPLITS", "SUGARCREPE_KINDS",
           "WINOGROUND_KINDS", "build", "export", "options_item", "order_perturbations", "quadruple",
           "retention_set"]
