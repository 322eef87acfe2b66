"""The shapes world and its analytic scorer (difforge-zoo)."""

import numpy as np
import pytest
import torch

import difforge
from difforge_zoo.scorer import alignment, detect, parse_prompt, scene_matches, score
from difforge_zoo.shapes import (
    BASE_SHAPES,
    COLOURS,
    HELD_OUT_COMBINATIONS,
    HELD_OUT_SHAPES,
    draw_scene,
    generate,
)


def test_generation_is_deterministic_and_seeded():
    a, b, c = generate(5, seed=1), generate(5, seed=1), generate(5, seed=2)
    assert all(np.array_equal(x.image, y.image) and x.caption == y.caption for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=True))
    assert a[0].image.shape == (32, 32, 3) and a[0].image.dtype == np.uint8


def test_splits_keep_held_out_material_out_of_training():
    train = [o for s in generate(600, seed=0, split="train") for o in s.objects]
    assert {o.shape for o in train} == set(BASE_SHAPES)
    assert {o.colour for o in train} == set(COLOURS) and len(COLOURS) >= 6
    assert not {(o.colour, o.shape) for o in train} & HELD_OUT_COMBINATIONS
    heldout = generate(100, seed=0, split="heldout")
    assert all((s.objects[0].colour, s.objects[0].shape) in HELD_OUT_COMBINATIONS for s in heldout)
    concepts = [o.shape for s in generate(100, seed=0, split="concepts") for o in s.objects]
    assert set(concepts) == set(HELD_OUT_SHAPES)


def test_captions_follow_the_grammar_and_ground_truth():
    scene = draw_scene([("circle", "red", "left", "large"), ("square", "orange", "right", "small")], seed=0)
    assert scene.caption == "a red circle on the left and an orange square on the right"
    truth = scene.truth()
    assert [o["shape"] for o in truth["objects"]] == ["circle", "square"]
    assert truth["objects"][0]["box"][2] <= 17  # the left object stays in the left half
    assert [(e.colour, e.shape, e.position) for e in parse_prompt(scene.caption)] == [
        ("red", "circle", "left"), ("orange", "square", "right")]


@pytest.mark.parametrize("split,style", [("train", "plain"), ("heldout", "plain"), ("concepts", "plain"),
                                         ("train", "stripes"), ("concepts", "dots")])
def test_scorer_recovers_generated_scenes(split, style):
    """The analytic scorer must be >= 98 % accurate (whole scenes: every shape, colour, position)."""
    scenes = generate(400, seed=123, split=split, style=style)
    accuracy = np.mean([scene_matches(s, detect(s.image)) for s in scenes])
    assert accuracy >= 0.98, accuracy


def test_per_attribute_accuracy_on_ground_truth():
    scenes = generate(300, seed=7)
    result = score([s.image for s in scenes], [s.caption for s in scenes])
    for key in ("colour_accuracy", "shape_accuracy", "position_accuracy", "size_accuracy", "count_accuracy"):
        assert result[key] >= 0.98, (key, result[key])
    assert result["mean_reward"] >= 0.98


def test_reward_falls_with_each_wrong_attribute():
    image = draw_scene([("circle", "red", "left", "large")], seed=0).image
    right = alignment(image, "a red circle on the left")["reward"]
    wrong_colour = alignment(image, "a blue circle on the left")["reward"]
    wrong_both = alignment(image, "a blue square on the left")["reward"]
    wrong_all = alignment(image, "a blue square on the right")["reward"]
    assert right == 1.0 > wrong_colour > wrong_both > wrong_all == 0.0
    blank = np.full((32, 32, 3), 236, dtype=np.uint8)
    assert alignment(blank, "a red circle")["reward"] == 0.0
    assert alignment(image, "a red circle and a blue square")["count"] == 0.0


def test_scorer_reads_float_chw_tensors_like_model_outputs():
    scene = draw_scene([("triangle", "green", "right", "large")], seed=3)
    tensor = torch.from_numpy(scene.image).permute(2, 0, 1).float() / 127.5 - 1
    noisy = (tensor + 0.05 * torch.randn_like(tensor)).clamp(-1, 1)
    assert scene_matches(scene, detect(noisy))


def test_registered_reward_and_dataset(fresh_plugins):
    reward = difforge.get_registry("rewards").get("shapes-alignment")
    scenes = generate(4, seed=0)
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() / 127.5 - 1 for s in scenes])
    assert torch.allclose(reward(images, [s.caption for s in scenes]), torch.ones(4))
    with pytest.raises(ValueError, match="needs the prompts"):
        reward(images)
    dataset = difforge.get_registry("datasets").get("shapes")(count=8, seed=0)
    item = dataset[3]
    assert item["pixel_values"].shape == (3, 32, 32) and item["caption"] == generate(8, seed=0)[3].caption


def test_zoo_plugin_conforms():
    from difforge_testkit import check_plugin

    assert check_plugin("difforge-zoo") == {"captioners": ["shapes-captioner"], "commands": ["quickstart"],
                                            "datasets": ["shapes"], "objectives": ["clip-contrastive", "ip-adapter"],
                                            "rewards": ["shapes-alignment"]}


def test_captioner_describes_what_is_drawn_and_the_scorer_agrees(fresh_plugins):
    """The registered captioner writes each scene's caption in the generator's grammar (sizes
    aside), so the alignment reward of an image against its own caption is 1."""
    captioner = difforge.get_registry("captioners").get("shapes-captioner")
    scenes = generate(200, seed=11, split="any", num_objects=2)
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() / 127.5 - 1 for s in scenes])
    captions = captioner(images)
    unsized = [" ".join(w for w in s.caption.split() if w not in ("small", "large")) for s in scenes]
    agree = np.mean([c.replace("an ", "a ") == u.replace("an ", "a ") for c, u in zip(captions, unsized, strict=True)])
    assert agree >= 0.95, agree
    assert np.mean([alignment(s.image, c)["reward"] for s, c in zip(scenes, captions, strict=True)]) >= 0.98
    swapped = draw_scene([("circle", "blue", "left", "large"), ("triangle", "red", "right", "large")], seed=1)
    assert captioner(torch.from_numpy(swapped.image).permute(2, 0, 1)[None].float() / 127.5 - 1) == [
        "a blue circle on the left and a red triangle on the right"]
    assert captioner(torch.zeros(1, 3, 32, 32)) == [""]
