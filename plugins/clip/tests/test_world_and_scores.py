"""The benchmark world's ground truth and the score rules (no model)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from difforge_clip import benchmark as world
from difforge_clip import scores
from difforge_clip.compositions import caption, hard_negative, parse_caption
from difforge_zoo.scorer import alignment
from difforge_zoo.shapes import HELD_OUT_COMBINATIONS


@pytest.mark.parametrize("kind", world.WINOGROUND_KINDS)
def test_quadruples_have_the_same_words_and_each_caption_fits_only_its_image(kind):
    for i in range(12):
        q = world.quadruple(kind, i, seed=3)
        assert Counter(q.captions[0].split()) == Counter(q.captions[1].split())
        assert q.captions[0] != q.captions[1]
        assert not np.array_equal(q.images[0], q.images[1])
        for image, own, other in ((q.images[0], *q.captions), (q.images[1], *q.captions[::-1])):
            assert alignment(image, own)["full"] == 1.0  # the analytic scorer reads the truth back
            assert alignment(image, other)["full"] == 0.0


def test_splits_hold_or_avoid_the_held_out_combinations():
    bench = world.build(8, seed=1, split="heldout")
    for q in bench.quadruples:
        assert any((c, s) in HELD_OUT_COMBINATIONS for objects in q.objects for s, c, _, _ in objects)
    fresh = world.build(8, seed=1, split="fresh")
    for q in fresh.quadruples:
        assert not any((c, s) in HELD_OUT_COMBINATIONS for objects in q.objects for s, c, _, _ in objects)
    assert world.build(8, seed=1).quadruples[0].captions == bench.quadruples[0].captions  # seeded
    assert world.build(8, seed=2).quadruples[0].captions != bench.quadruples[0].captions


def test_option_items_have_one_true_caption():
    bench = world.build(6, seed=0)
    kinds = Counter((it.family, it.kind) for it in bench.options)
    assert len(kinds) == len(world.ARO_KINDS) + len(world.SUGARCREPE_KINDS) and set(kinds.values()) == {6}
    for item in bench.options:
        truth = item.caption_options[item.true_index]
        assert truth == caption(item.objects) and alignment(item.image, truth)["full"] == 1.0
        others = [c for i, c in enumerate(item.caption_options) if i != item.true_index]
        assert truth not in others and len(set(others)) >= 1
        if item.kind == "order":
            assert item.true_index == 0 and len(item.caption_options) == 5
            assert all(sorted(o.split()) == sorted(truth.split()) for o in others)
        elif item.family == "aro":
            assert item.true_index == 1  # ARO's VG sets: [false, true]


def test_export_writes_winoground_and_aro_files(tmp_path):
    import json

    out = world.export(world.build(2, seed=0), tmp_path / "bench")
    rows = [json.loads(line) for line in (out / "winoground.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * len(world.WINOGROUND_KINDS)
    assert {"id", "image_0", "image_1", "caption_0", "caption_1", "tag"} <= rows[0].keys()
    items = json.loads((out / "aro.json").read_text())
    assert all((out / p).exists() for it in items for p in it["image_options"])
    assert items[0]["caption_options"][items[0]["true_index"]]


def test_hard_negatives_stay_in_the_grammar_and_change_the_meaning():
    rng = random.Random(0)
    for text in ["a red circle on the left and a blue square on the right", "a green triangle",
                 "a small orange square at the top and a large purple circle at the bottom",
                 "a yellow circle on the right"]:
        for _ in range(10):
            negative = hard_negative(text, rng)
            assert negative is not None and negative != text and parse_caption(negative) is not None
    assert hard_negative("a photo of a dog", rng) is None


def test_winoground_rules_on_hand_made_similarities():
    perfect = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    assert scores.winoground(perfect) == {"text": 1.0, "image": 1.0, "group": 1.0}
    bag_of_words = np.ones((1, 2, 2))  # the same score for both captions: ties are wrong
    assert scores.winoground(bag_of_words) == {"text": 0.0, "image": 0.0, "group": 0.0}
    # each image prefers its caption, but image 0 is "easier" for both captions: text only
    text_only = np.array([[[0.9, 0.8], [0.3, 0.4]]])
    assert scores.winoground(text_only) == {"text": 1.0, "image": 0.0, "group": 0.0}
    rng = np.random.default_rng(0)
    chance = scores.winoground(rng.normal(size=(40000, 2, 2)))
    for key, value in scores.WINOGROUND_CHANCE.items():
        assert abs(chance[key] - value) < 0.01
    with pytest.raises(ValueError, match=r"\(n, 2, 2\)"):
        scores.winoground(np.ones((3, 2)))


def test_option_accuracy_recall_and_zero_shot_rules():
    assert scores.option_accuracy([[0.1, 0.9], [0.5, 0.5], [0.7, 0.2]], [1, 1, 0]) == pytest.approx(2 / 3)
    sim = np.array([[0.9, 0.1, 0.0], [0.2, 0.1, 0.8], [0.7, 0.1, 0.4]])
    keys = ["a", "b", "a"]  # targets 0 and 2 have the same caption: either one is a hit for "a"
    assert scores.recall_at_k(sim, keys, keys, 1) == pytest.approx(2 / 3)
    assert scores.recall_at_k(sim, keys, keys, 2) == pytest.approx(2 / 3)
    assert scores.recall_at_k(sim, keys, keys, 3) == 1.0
    assert scores.zero_shot_accuracy([[0.2, 0.8], [0.9, 0.1]], ["y", "y"], ["x", "y"]) == 0.5
