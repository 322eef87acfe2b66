"""Alignment building blocks: rewards, the DDIM policy's log-probabilities, preference data,
the reference model and config validation (fast; the reward-gain tests are in test_alignment.py)."""

import base64
import io
import json
import math
import random

import pytest
import torch
from helpers import plugin_module
from PIL import Image

import difforge
from difforge.config import load_config
from difforge.errors import ConfigError, DataError, RegistryError
from difforge.plugins import register_plugin
from difforge.training.preferences import PreferencePairsDataset
from difforge.training.reference import ReferenceModel
from difforge_align.pairs import (
    DualCaptions,
    build_preference_pairs,
    dual_captions,
    perturb_caption,
    preference_pairs,
    recaption_pairs,
)
from difforge_align.policy import (
    consistency_step,
    ddim_step,
    sample_trajectories,
    step_log_prob,
)
from difforge_align.rewards import PerPromptStatTracker


def reward(name):
    return difforge.get_registry("rewards").get(name)


# ------------------------------------------------------------------------------------ rewards
def test_rewards_reject_bad_input_with_one_line_naming_the_reward():
    images = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="'colourfulness'.*got \\(3, 8, 8\\)"):
        reward("colourfulness")(images[0])
    with pytest.raises(ValueError, match="'jpeg-compressibility'.*torch.uint8"):
        reward("jpeg-compressibility")(images.to(torch.uint8))
    with pytest.raises(ValueError, match="not latents"):
        reward("jpeg-compressibility")(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        reward("jpeg-compressibility")(images, ["a red circle"])
    with pytest.raises(ValueError, match="'shapes-alignment': needs the prompts"):
        reward("shapes-alignment")(images)


def test_compressibility_and_incompressibility_are_opposite_and_rank_noise_below_flat():
    flat = torch.zeros(1, 3, 32, 32)
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    images = torch.cat([flat, noise])
    small = reward("jpeg-compressibility")(images)
    assert torch.equal(small, -reward("jpeg-incompressibility")(images))
    assert small[0] > small[1]
    assert not reward("jpeg-compressibility").differentiable


def test_colourfulness_is_differentiable_and_orders_grey_below_saturated():
    grey = torch.zeros(1, 3, 16, 16)
    red = torch.tensor([1.0, -1.0, -1.0]).reshape(1, 3, 1, 1).expand(1, 3, 16, 16)
    images = torch.cat([grey, red]).clone().requires_grad_(True)
    scores = reward("colourfulness")(images)
    assert scores[0] < 0.01 < 0.3 < scores[1]  # pure red: 0.3 * |(rg, yb)| = 0.3 * |(1, 0.5)|
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_per_prompt_advantages_use_each_prompts_statistics():
    tracker = PerPromptStatTracker(buffer_size=8, min_count=2)
    adv = tracker.advantages(["a", "a", "b", "b"], torch.tensor([1.0, 3.0, 10.0, 30.0]))
    assert torch.allclose(adv, torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-4)


# ------------------------------------------------------------------------------------ policy
def test_ddim_step_log_prob_is_the_gaussian_log_density():
    g = torch.Generator().manual_seed(0)
    x0, x = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    a, a_prev = torch.tensor(0.3), torch.tensor(0.6)
    x_prev, log_prob = ddim_step(x0, x, a, a_prev, eta=1.0, generator=g)
    eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
    sigma = ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps
    expected = torch.distributions.Normal(mean, sigma).log_prob(x_prev).flatten(1).mean(1)
    assert torch.allclose(log_prob, expected, atol=1e-5)
    _, again = ddim_step(x0, x, a, a_prev, eta=1.0, x_prev=x_prev)
    assert torch.equal(again, log_prob)
    _, consistency = consistency_step(x0, a_prev, x_prev=x_prev)
    expected = torch.distributions.Normal(a_prev.sqrt() * x0, (1 - a_prev).sqrt()).log_prob(x_prev).flatten(1).mean(1)
    assert torch.allclose(consistency, expected, atol=1e-5)


@pytest.fixture(scope="module")
def zoo():
    return difforge.load_backbone("shapes-sd-tiny")


@pytest.mark.parametrize("policy", ["ddim", "consistency"])
def test_rescored_trajectories_match_their_sampling_log_probs(zoo, policy):
    g = torch.Generator().manual_seed(0)
    traj = sample_trajectories(zoo, zoo.denoiser, ["a red circle", "a blue square"], num_steps=4, eta=1.0,
                               guidance_scale=3.0, generator=g, policy=policy)
    assert traj.latents.shape[:2] == (5, 2) and traj.log_probs.shape == (4, 2)
    index = torch.tensor([1, 0])
    for step in traj.stochastic_steps():
        with torch.no_grad():
            again = step_log_prob(zoo, zoo.denoiser, traj, step, index)
        assert torch.allclose(again, traj.log_probs[step, index], atol=1e-4), step
    assert traj.stochastic_steps() == [0, 1, 2]  # the last step, to ᾱ = 1, is deterministic


@pytest.mark.parametrize("shared", [True, False])
def test_d3po_pairs_share_their_initial_state(zoo, shared):
    """D3PO's two trajectories of a pair start from the same x_T (the authors' sampler) and part
    only through the stochastic steps; ``shared_initial_noise=False`` draws each its own."""
    from difforge_align.d3po import D3POObjective

    objective = D3POObjective(zoo, labeller="colourfulness", num_steps=3, pairs_per_prompt=2,
                              shared_initial_noise=shared)
    objective.start_round(["a red circle", "a blue square"], zoo.denoiser, torch.Generator().manual_seed(0))
    traj = objective._round[0]
    first, second = traj.latents[:, 0::2], traj.latents[:, 1::2]
    assert torch.equal(first[0], second[0]) is shared
    assert not torch.equal(first[-1], second[-1])
    assert len({tuple(x.flatten()[:4].tolist()) for x in traj.latents[0]}) == (4 if shared else 8)  # 4 pairs


@pytest.mark.parametrize("ratio_clip,moves", [(None, True), (0.1, False)])
def test_d3po_ratio_clip_stops_the_gradient_of_a_ratio_outside_the_trust_region(monkeypatch, ratio_clip, moves):
    """With ``ratio_clip`` a step whose π_θ/π_ref left [1 − ε, 1 + ε] gives no gradient (the authors' clamp)."""
    from contextlib import contextmanager

    from difforge_align import d3po

    policy = torch.tensor([0.5, -0.5], requires_grad=True)  # log-ratios of the winner and the loser: e^0.5 > 1.1

    def fake_log_prob(backbone, model, traj, step, index):
        return policy if model == "policy" else torch.zeros(2)

    class Reference:
        @contextmanager
        def active(self):
            yield "reference"

    monkeypatch.setattr(d3po, "step_log_prob", fake_log_prob)
    objective = d3po.D3POObjective(None, labeller="colourfulness", ratio_clip=ratio_clip)
    objective.reference, objective.rounds = Reference(), [{"reward_mean": 0.0}]
    objective._round = (None, torch.tensor([0]), torch.tensor([1]))
    objective._queue = [(torch.tensor([0]), [0])]
    loss, logs = objective.loss({"caption": []}, "policy", torch.Generator())
    loss.backward()
    assert bool(policy.grad.abs().sum() > 0) is moves
    clipped = 1.0 if ratio_clip is None else math.log(1 + ratio_clip) - math.log(1 - ratio_clip)
    assert float(logs["margin"]) == pytest.approx(10.0 * clipped)  # |β (log-ratio of winner − of loser)|, β 10


def test_initial_noise_of_the_wrong_shape_is_refused(zoo):
    with pytest.raises(ValueError, match="initial noise has shape"):
        sample_trajectories(zoo, zoo.denoiser, ["a red circle"], num_steps=2, eta=1.0, guidance_scale=1.0,
                            generator=torch.Generator(), initial=torch.zeros(2, 4, 8, 8))


# ------------------------------------------------------------------------------------ reference
def test_reference_is_the_base_model_without_a_copy():
    from difforge.adapters import AdapterSet

    zoo = difforge.load_backbone("shapes-sd-tiny")  # its own copy: an adapter is attached

    adapters = AdapterSet(zoo.denoiser)
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([500, 500])
    cond = zoo.encode_prompts(["a red circle"] * 2)
    with torch.no_grad():
        base = zoo.predict(x, t, cond)
    adapters.add("lora", "policy", rank=4, target_modules=["to_q", "to_v"])
    with torch.no_grad():
        for name, param in zoo.denoiser.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2, generator=torch.Generator().manual_seed(2))
    reference = ReferenceModel(zoo, adapters)
    assert not reference.keeps_a_copy
    with torch.no_grad():
        assert not torch.allclose(zoo.predict(x, t, cond), base)
    with reference.active() as model:
        assert torch.equal(zoo.predict(x, t, cond, denoiser=model), base)
    with torch.no_grad():
        assert not torch.allclose(zoo.predict(x, t, cond), base)  # re-enabled afterwards


def test_seppo_snapshots_restore_the_policy_and_follow_the_strategy():
    from difforge_align.seppo import PolicySnapshots

    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.ones(2))]
    snapshots = PolicySnapshots(params, max_kept=3)
    for step in range(4):
        with torch.no_grad():
            params[0].fill_(step)
        snapshots.take(step * 10)
    assert snapshots.steps == [0, 20, 30]  # the initial snapshot stays; the oldest later one goes
    with torch.no_grad():
        params[0].fill_(7.0)
    with snapshots.loaded(1):
        assert torch.equal(params[0], torch.full((3,), 2.0))
    assert torch.equal(params[0], torch.full((3,), 7.0))  # the policy's own values are back
    g = torch.Generator().manual_seed(0)
    assert snapshots.choose("initial", g) == 0 and snapshots.choose("latest", g) == 2
    assert {snapshots.choose("random", g) for _ in range(50)} == {0, 1, 2}


def test_seppo_flipper_learns_reference_samples_the_policy_fits_better_than_the_anchor_as_winners():
    from difforge_align.seppo import flipper_sign

    winner = torch.tensor([0.10, 0.10, 0.30])
    reference = torch.tensor([0.20, 0.05, 0.30])
    assert flipper_sign(winner, reference).tolist() == [1.0, -1.0, -1.0]


# ------------------------------------------------------------------------------------ data
def test_build_preference_pairs_writes_best_vs_worst(zoo, tmp_path):
    path = build_preference_pairs(zoo, ["a red circle", "a blue square"], reward("colourfulness"), tmp_path,
                                  samples_per_prompt=4, num_steps=8, seed=0,
                                  captions=dual_captions(perturb="strong", word_groups=[["red", "blue"]]))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows and all(r["chosen_score"] > r["rejected_score"] for r in rows)
    data = PreferencePairsDataset(path=str(tmp_path))
    item = data[0]
    assert item["sample_chosen"].shape == (3, 32, 32) and item["caption_rejected"] != item["caption"]


def test_preference_pairs_caption_strategies(fresh_plugins, tmp_path):
    """DCPO's three ways to caption a pair: the perturbed prompt for the rejected image, the
    captioner's description of each image, and those descriptions with the rejected one
    perturbed (hybrid)."""
    register_plugin(plugin_module("captioner", difforge_register_captioners=lambda: {"count": lambda images: [
        f"{len(images)} red things"] * len(images)}), "captioner")
    groups = [["red", "blue"]]
    rows = {}
    for name, options in {"perturb": {"perturb": "strong", "word_groups": groups}, "caption": {"captioner": "count"},
                          "hybrid": {"perturb": "strong", "word_groups": groups, "captioner": "count"}}.items():
        path = preference_pairs("shapes-sd-tiny", ["a red circle"], "colourfulness", tmp_path / name,
                                         samples_per_prompt=2, num_steps=2, **options)
        rows[name] = json.loads(path.read_text().splitlines()[0])
    assert rows["perturb"]["caption_rejected"] == "a blue circle"
    assert rows["caption"]["caption_rejected"] == "1 red things"
    assert rows["hybrid"]["caption_rejected"] == "1 blue things"
    assert rows["perturb"]["caption_chosen"] == "a red circle"
    assert rows["caption"]["caption_chosen"] == rows["hybrid"]["caption_chosen"] == "1 red things"
    with pytest.raises(RegistryError, match="unknown captioner 'nope'"):
        preference_pairs("shapes-sd-tiny", ["a red circle"], "colourfulness", tmp_path / "x",
                                  captioner="nope")


def test_recaption_pairs_rewrites_dcpo_captions_and_keeps_the_images(tmp_path):
    """One set of sampled pairs serves every DCPO strategy: the captioner sees each image
    itself, and the new folder's relative paths still reach the original images."""
    source = tmp_path / "pairs"
    (source / "images").mkdir(parents=True)
    Image.new("RGB", (16, 16), (255, 0, 0)).save(source / "images" / "red.png")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(source / "images" / "blue.png")
    def describe(images):
        return ["a red circle" if float(image[0].mean()) > 0.5 else "a blue circle" for image in images]

    (source / "pairs.jsonl").write_text(json.dumps({"caption": "a blue square", "chosen": "images/blue.png",
                                                    "rejected": "images/red.png"}) + "\n")
    captioned = recaption_pairs(source, tmp_path / "captioned", dual_captions(describe=describe))
    hybrid = recaption_pairs(source, tmp_path / "hybrid", dual_captions(
        perturb="strong", word_groups=[["red", "orange"]], describe=describe))
    perturbed = recaption_pairs(source, tmp_path / "perturbed", dual_captions(perturb="strong",
                                                                               word_groups=[["blue", "green"]]))
    assert json.loads(captioned.read_text())["caption_rejected"] == "a red circle"
    assert json.loads(hybrid.read_text())["caption_rejected"] == "an orange circle"
    assert json.loads(perturbed.read_text())["caption_rejected"] == "a green square"
    assert json.loads(perturbed.read_text())["caption_chosen"] == "a blue square"  # the prompt
    assert json.loads(captioned.read_text())["caption_chosen"] == "a blue circle"  # the description
    item = PreferencePairsDataset(path=str(tmp_path / "hybrid"), resolution=16)[0]
    assert item["caption_chosen"] == "a blue circle" and item["sample_rejected"][0].mean() > 0.9
    assert dual_captions() is None
    with pytest.raises(ValueError, match="needs word_groups"):
        dual_captions(perturb="weak")
    with pytest.raises(ValueError, match="give perturb, describe"):
        DualCaptions()


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 32), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_pick_a_pic_layout_orders_pairs_by_label_and_drops_ties(tmp_path):
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    b64 = lambda data: "base64:" + base64.b64encode(data).decode()  # noqa: E731
    rows = [{"caption": "red wins", "jpg_0": b64(red), "jpg_1": b64(blue), "label_0": 1.0},
            {"caption": "blue wins", "jpg_0": b64(red), "jpg_1": b64(blue), "label_0": 0.0},
            {"caption": "tie", "jpg_0": b64(red), "jpg_1": b64(blue), "label_0": 0.5}]
    (tmp_path / "pickapic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = PreferencePairsDataset(path=str(tmp_path / "pickapic.jsonl"), resolution=16)
    assert len(data) == 2
    assert data[0]["sample_chosen"][0].mean() > 0.9 and data[1]["sample_chosen"][2].mean() > 0.9


def test_bad_preference_rows_and_images_name_the_file(tmp_path):
    (tmp_path / "pairs.jsonl").write_text('{"caption": "x", "chosen": "a.png"}\n')
    with pytest.raises(DataError, match=r"pairs.jsonl:1: missing field\(s\) rejected"):
        PreferencePairsDataset(path=str(tmp_path))
    (tmp_path / "pairs.jsonl").write_text('{"caption": "x", "chosen": "a.png", "rejected": "b.png"}\n')
    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*a.png"):
        PreferencePairsDataset(path=str(tmp_path))[0]


def test_read_pairs_is_the_public_reader_for_non_image_pairs(tmp_path):
    import difforge

    rows = [{"caption": "x", "chosen": "a.npy", "rejected": "b.npy", "extra": 1}]
    (tmp_path / difforge.PAIRS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert difforge.read_pairs(tmp_path) == (tmp_path, rows)
    assert difforge.read_pairs(tmp_path / "pairs.jsonl") == (tmp_path, rows)
    (tmp_path / "other.jsonl").write_text('{"chosen": "a.npy", "rejected": "b.npy"}\n')
    with pytest.raises(difforge.DataError, match=r"other.jsonl:1: missing field\(s\) caption"):
        difforge.read_pairs(tmp_path / "other.jsonl")
    with pytest.raises(difforge.DataError, match=r"data.options.path: .*missing.jsonl does not exist"):
        difforge.read_pairs(tmp_path / "missing.jsonl")


def test_caption_perturbation_levels():
    groups = [["red", "blue", "green"], ["circle", "square"], ["left", "right"]]
    caption = "a red circle on the left and a blue square on the right"
    def changed_words(level: str) -> int:
        perturbed = perturb_caption(caption, groups, level, random.Random(0))
        return sum(a != b for a, b in zip(caption.split(), perturbed.split(), strict=True))

    changed = {level: changed_words(level) for level in ("weak", "medium", "strong")}
    assert changed == {"weak": 1, "medium": 3, "strong": 6}
    with pytest.raises(ValueError, match="perturbation level"):
        perturb_caption(caption, groups, "extreme", random.Random(0))
    assert perturb_caption("A red apple beside an orange", [["red", "orange"]], "strong", random.Random(0)) == \
        "An orange apple beside a red"


# ------------------------------------------------------------------------------------ configs
def _config(objective, options, dataset="prompts", data_options=None):
    return {"model": {"pretrained": "shapes-sd-tiny"},
            "data": {"dataset": dataset, "options": data_options or {"prompts": ["a red circle"]}},
            "adapter": {"type": "lora"}, "objective": {"name": objective, "options": options}}


def test_configs_are_checked_before_any_weights_load():
    with pytest.raises(ConfigError, match="objective 'diffusion-dpo' needs preference pairs"):
        load_config(data=_config("diffusion-dpo", {}))
    with pytest.raises(ConfigError, match="objective.options.reward: .*'jpeg-compressibility' is not differentiable"):
        load_config(data=_config("alignprop", {"reward": "jpeg-compressibility"}))
    with pytest.raises(ConfigError, match="objective.options.reward: .*unknown reward 'jpeg-compresibility'"):
        load_config(data=_config("ddpo", {"reward": "jpeg-compresibility"}))
    with pytest.raises(ConfigError, match="objective 'denoising' trains on images"):
        load_config(data=_config("denoising", {}))
    with pytest.raises(ConfigError, match="objective 'seppo' trains on images"):
        load_config(data=_config("seppo", {}))
    with pytest.raises(ConfigError, match="objective.options.ref_strategy: "):
        load_config(data=_config("seppo", {"ref_strategy": "oldest"}, "shapes", {"count": 4}))
    with pytest.raises(ConfigError,
                       match="adapter.component: objective 'texforce' trains an adapter on the text encoder"):
        load_config(data=_config("texforce", {"reward": "shapes-alignment"}))
    texforce = _config("texforce", {"reward": "shapes-alignment"})
    texforce["adapter"]["component"] = "text_encoder"
    assert load_config(data=texforce).adapter.component == "text_encoder"
    assert load_config(data=_config("ddpo", {"reward": "shapes-alignment"})).objective.name == "ddpo"
    assert math.isclose(load_config(data=_config("diffusion-dpo", {"beta": 100}, "preference-pairs", {"path": "x"}))
                        .objective.options["beta"], 100)


def test_the_text_encoder_takes_only_peft_adapters(tmp_path):
    config = _config("texforce", {"reward": "shapes-alignment"})
    config["adapter"] = {"type": "difffit", "component": "text_encoder"}
    config["output"] = {"dir": str(tmp_path), "tensorboard": False, "progress": False}
    with pytest.raises(ConfigError, match="adapter.component: the text encoder takes the PEFT .* not 'difffit'"):
        difforge.Trainer(load_config(data=config))
