"""Captions as object lists, and the caption perturbations the benchmark and NegCLIP share.

An object is ``(shape, colour, position, size)`` as :func:`difforge_zoo.shapes.draw_scene`
takes it. Every perturbation keeps the caption inside the shapes-world grammar, so the scorer
and the diffusion model read it like any other caption; swaps keep the multiset of words
(Winoground's rule), replacements and additions do not (SugarCrepe's replace / add).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from difforge_zoo.scorer import parse_prompt
from difforge_zoo.shapes import BASE_SHAPES, COLOURS, POSITION_PHRASES, article

SceneObject = tuple[str, str, str, str]  # shape, colour, position, size


def phrase(obj: SceneObject, with_position: bool = True, with_size: bool = False) -> str:
    """The caption fragment of one object, e.g. "a red circle on the left"."""
    shape, colour, position, size = obj
    words = ([size] if with_size else []) + [colour, shape]
    words.insert(0, article(words[0]))
    if with_position:
        words.append(POSITION_PHRASES[position])
    return " ".join(words)


def caption(objects: Sequence[SceneObject], with_position: bool = True, with_size: bool = False) -> str:
    """The world's caption of ``objects`` ("a red circle on the left and a blue square on the right")."""
    phrases = [phrase(o, with_position, with_size) for o in objects]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def swap_colours(objects: Sequence[SceneObject]) -> list[SceneObject]:
    """The first two objects exchange colours (attribute binding)."""
    (s0, c0, p0, z0), (s1, c1, p1, z1), *rest = objects
    return [(s0, c1, p0, z0), (s1, c0, p1, z1), *rest]


def swap_shapes(objects: Sequence[SceneObject]) -> list[SceneObject]:
    """The first two objects exchange shapes (object binding)."""
    (s0, c0, p0, z0), (s1, c1, p1, z1), *rest = objects
    return [(s1, c0, p0, z0), (s0, c1, p1, z1), *rest]


def swap_positions(objects: Sequence[SceneObject]) -> list[SceneObject]:
    """The first two objects exchange places (the spatial relation)."""
    (s0, c0, p0, z0), (s1, c1, p1, z1), *rest = objects
    return [(s0, c0, p1, z0), (s1, c1, p0, z1), *rest]


SWAPS = {"colour-swap": swap_colours, "shape-swap": swap_shapes, "relation-swap": swap_positions}


def replace_colour(objects: Sequence[SceneObject], rng: random.Random) -> list[SceneObject]:
    """One object's colour replaced by a colour no object has (SugarCrepe replace-att)."""
    index = rng.randrange(len(objects))
    used = {o[1] for o in objects}
    shape, _, position, size = objects[index]
    colour = rng.choice([c for c in COLOURS if c not in used])
    return [*objects[:index], (shape, colour, position, size), *objects[index + 1:]]


def replace_shape(objects: Sequence[SceneObject], rng: random.Random) -> list[SceneObject]:
    """One object's shape replaced by a base shape no object has, or any other base shape (replace-obj)."""
    index = rng.randrange(len(objects))
    used = {o[0] for o in objects}
    _, colour, position, size = objects[index]
    pool = [s for s in BASE_SHAPES if s not in used] or [s for s in BASE_SHAPES if s != objects[index][0]]
    return [*objects[:index], (rng.choice(pool), colour, position, size), *objects[index + 1:]]


def parse_caption(text: str) -> tuple[list[SceneObject], bool, bool] | None:
    """``(objects, with_position, with_size)`` of a world caption, or ``None`` outside the grammar.
    A missing position reads as ``centre`` (a single object captioned without one)."""
    found = parse_prompt(text)
    if not found:
        return None
    with_position = all(e.position is not None for e in found)
    with_size = all(e.size is not None for e in found)
    objects = [(e.shape, e.colour, e.position or "centre", e.size or "small") for e in found]
    if caption(objects, with_position, with_size) != text.strip().lower():
        return None
    return objects, with_position, with_size


def hard_negative(text: str, rng: random.Random) -> str | None:
    """A NegCLIP-style hard negative of a world caption: two objects' colours, shapes or places
    swapped, or (one object) its colour or shape replaced; ``None`` when the caption is outside
    the grammar or no perturbation changes it."""
    parsed = parse_caption(text)
    if parsed is None:
        return None
    objects, with_position, with_size = parsed
    kinds = ["colour", "shape"]
    if len(objects) > 1:
        kinds = ["swap-colour", "swap-shape"] + (["swap-position"] if with_position else [])
    for kind in rng.sample(kinds, len(kinds)):
        if kind == "colour":
            perturbed = replace_colour(objects, rng)
        elif kind == "shape":
            perturbed = replace_shape(objects, rng)
        else:
            perturbed = {"swap-colour": swap_colours, "swap-shape": swap_shapes,
                         "swap-position": swap_positions}[kind](objects)
        negative = caption(perturbed, with_position, with_size)
        if negative != text:
            return negative
    return None


__all__ = ["SWAPS", "SceneObject", "caption", "hard_negative", "parse_caption", "phrase", "replace_colour",
           "replace_shape", "swap_colours", "swap_positions", "swap_shapes"]
