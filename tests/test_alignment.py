"""Every alignment objective raises its reward on held-out prompts of the shapes world
(small CPU budgets; benchmarks/alignment.py runs the full-size comparison)."""

import pytest
import torch

import difforge
from difforge.adapters import AdapterSet
from difforge_align import preference_pairs
from difforge_zoo.shapes import generate

TRAIN_PROMPTS = sorted({s.caption for s in generate(64, seed=11, split="train", num_objects=1)})[:12]
HELD_OUT_PROMPTS = sorted({s.caption for s in generate(64, seed=12, split="train", num_objects=1)}
                          - set(TRAIN_PROMPTS))[:8]
LORA = {"type": "lora", "options": {"rank": 4, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}}


def mean_reward(adapter_dir, reward: str, prompts=HELD_OUT_PROMPTS, num_steps: int = 10, per_prompt: int = 4,
                sampler: str = "ddim", guidance_scale: float = 4.0) -> float:
    """Mean reward of samples of ``prompts`` (fixed seed) from the zoo model, with the adapter if given."""
    backbone = difforge.load_backbone("shapes-sd-tiny")
    if adapter_dir is not None:
        AdapterSet(backbone.denoiser).load(adapter_dir, "tuned")
    prompts = [p for p in prompts for _ in range(per_prompt)]
    images = backbone.sample(prompts, num_steps=num_steps, guidance_scale=guidance_scale, sampler=sampler,
                             generator=torch.Generator().manual_seed(123))
    return float(difforge.get_registry("rewards").get(reward)(images, prompts).mean())


def run(tmp_path, objective: str, options: dict, steps: int, lr: float, data: dict | None = None, batch_size: int = 4):
    config = {"model": {"pretrained": "shapes-sd-tiny"},
              "data": {**(data or {"dataset": "prompts", "options": {"prompts": TRAIN_PROMPTS}}),
                       "batch_size": batch_size},
              "adapter": LORA, "objective": {"name": objective, "options": options},
              "train": {"steps": steps, "lr": lr, "seed": 0},
              "output": {"dir": str(tmp_path / objective), "tensorboard": False, "progress": False}}
    logs = []
    result = difforge.train(config, callbacks=[lambda trainer, step, log: logs.append(log)])
    return result, logs


def test_alignprop_raises_a_differentiable_reward(tmp_path):
    result, logs = run(tmp_path, "alignprop", {"reward": "colourfulness", "num_steps": 10, "truncation": 3},
                       steps=20, lr=1e-3)
    before, after = mean_reward(None, "colourfulness"), mean_reward(result.adapter_path, "colourfulness")
    print(f"alignprop: colourfulness {before:.3f} -> {after:.3f}")
    assert after > before + 0.05, (before, after)
    assert {log["truncation"] for log in logs} <= {1.0, 2.0, 3.0}


def test_textcraftor_tunes_the_text_encoder_alone_and_its_weight_is_a_slider(tmp_path):
    """TextCraftor (examples/configs/alignment/textcraftor.yaml): the differentiable reward,
    backpropagated through the sampler into a LoRA of the text encoder, raises colourfulness on
    held-out prompts with the UNet untouched; scaling the LoRA interpolates between the original
    and the tuned encoder, so half the weight lands between them."""
    from pathlib import Path

    from safetensors.torch import load_file

    config = Path(__file__).resolve().parents[1] / "examples" / "configs" / "alignment" / "textcraftor.yaml"
    result = difforge.train(config, overrides=["train.steps=20", f"output.dir={tmp_path / 'textcraftor'}",
                                               "output.progress=false"])
    keys = [k for f in Path(result.adapter_path).glob("*.safetensors") for k in load_file(f)]
    assert keys and all(k.startswith("text_encoder.") for k in keys)

    def colourfulness(weight: float) -> float:
        model = difforge.load("shapes-sd-tiny", adapters=[(result.adapter_path, weight)] if weight else [])
        prompts = [p for p in HELD_OUT_PROMPTS for _ in range(4)]
        images = model.sample(prompts, num_steps=10, guidance_scale=4.0, generator=torch.Generator().manual_seed(123))
        return float(difforge.get_registry("rewards").get("colourfulness")(images, prompts).mean())

    base, half, tuned = colourfulness(0.0), colourfulness(0.5), colourfulness(1.0)
    print(f"textcraftor: colourfulness {base:.3f} -> {half:.3f} at half weight -> {tuned:.3f}")
    assert tuned > base + 0.03 and base < half < tuned, (base, half, tuned)


TEXT_ENCODER_LORA = {"type": "lora", "component": "text_encoder", "options": {"rank": 4}}


@pytest.mark.parametrize("objective, num_steps, adapter, lr", [("ddpo", 6, LORA, 3e-3), ("rlcm", 4, LORA, 3e-3),
                                                               ("texforce", 6, TEXT_ENCODER_LORA, 3e-4)])
def test_policy_gradient_raises_the_likelihood_of_advantaged_trajectories(tmp_path, objective, num_steps, adapter, lr):
    """One sampling round trained for 4 inner epochs: the steps of trajectories with a positive
    advantage become more likely and those with a negative one less likely; for TexForce
    through a LoRA of the text encoder alone. (The reward gain of DDPO needs more samples than
    a unit test can afford: benchmarks/alignment.py.)"""
    from difforge.config import load_config

    options = {"reward": "colourfulness", "num_steps": num_steps, "samples_per_prompt": 4, "inner_epochs": 4,
               "clip_range": 1.0, "stat_min_count": 4}
    config = {"model": {"pretrained": "shapes-sd-tiny"},
              "data": {"dataset": "prompts", "options": {"prompts": TRAIN_PROMPTS[:4]}, "batch_size": 4},
              "adapter": adapter, "objective": {"name": objective, "options": options},
              "train": {"steps": 4, "lr": lr, "seed": 0},
              "output": {"dir": str(tmp_path / objective), "tensorboard": False, "progress": False}}
    trainer = difforge.Trainer(load_config(data=config))
    trainer.fit()
    traj, advantages = trainer.objective._round
    assert len(trainer.objective.rounds) == 1  # every step trained the same round
    index = torch.arange(len(advantages))
    with torch.no_grad():
        change = torch.stack([trainer.objective.step_log_prob(trainer.backbone.denoiser, traj, step, index)
                              - traj.log_probs[step] for step in traj.stochastic_steps()]).mean(0)
    # within each prompt (advantages are normalised per prompt): moving any parameter lowers the
    # mean likelihood of the policy's own samples a little, so compare trajectories of one prompt
    per_prompt = change.view(-1, options["samples_per_prompt"])
    centred = (per_prompt - per_prompt.mean(1, keepdim=True)).flatten()
    correlation = torch.corrcoef(torch.stack([centred, advantages.float()]))[0, 1]
    assert correlation > 0.5, (correlation, change, advantages)


@pytest.fixture(scope="module")
def colourful_pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    preference_pairs("shapes-sd-tiny", TRAIN_PROMPTS * 2, "colourfulness", out, samples_per_prompt=4,
                              num_steps=10, perturb="strong",
                              word_groups=[["red", "green", "blue", "yellow", "purple", "orange"]])
    return out


@pytest.mark.parametrize("objective", ["diffusion-dpo", "dcpo"])
def test_preference_optimisation_learns_the_preferred_images(tmp_path, colourful_pairs, objective):
    data = {"dataset": "preference-pairs", "options": {"path": str(colourful_pairs)}}
    result, logs = run(tmp_path, objective, {"beta": 2000.0}, steps=40, lr=1e-3, data=data)
    assert logs[0]["loss"] == pytest.approx(0.6931, abs=0.02)  # policy == reference at the start: -log σ(0)
    assert sum(log["implicit_accuracy"] for log in logs[-10:]) / 10 > 0.6
    before, after = mean_reward(None, "colourfulness"), mean_reward(result.adapter_path, "colourfulness")
    assert after > before, (before, after)


def test_d3po_prefers_the_labelled_winners(tmp_path):
    """After training on one round of labelled pairs, the policy's log-probability ratio to the
    reference is higher on the winners' steps than on the losers' (DPO's implicit accuracy)."""
    options = {"labeller": "colourfulness", "beta": 100.0, "num_steps": 6, "pairs_per_prompt": 2, "inner_epochs": 4}
    result, logs = run(tmp_path, "d3po", options, steps=4, lr=3e-3)
    print("d3po:", [(round(log["loss"], 4), round(log["implicit_accuracy"], 3)) for log in logs])
    assert logs[0]["loss"] == pytest.approx(0.6931, abs=0.02)  # policy == reference at the start
    assert logs[0]["margin"] == pytest.approx(0.0, abs=1e-6)
    assert logs[-1]["loss"] < logs[0]["loss"] - 0.05 and logs[-1]["implicit_accuracy"] > 0.7, logs


def test_pso_tunes_the_few_step_sampler_towards_the_training_images(tmp_path):
    """PSO on images of the held-out colour-shape combinations (never in the UNet's data): its
    4-step consistency samples of those prompts, which the base draws poorly at 4 steps
    (alignment about 0.54 against 0.99 with 10 DDIM steps), align better with them."""
    from difforge_zoo.shapes import HELD_OUT_COMBINATIONS, article

    data = {"dataset": "shapes", "options": {"count": 96, "split": "heldout", "num_objects": 1}}
    result, logs = run(tmp_path, "pso", {"beta": 2000.0, "num_steps": 4, "sampler": "consistency"}, steps=25,
                       lr=1e-3, data=data, batch_size=8)
    assert logs[0]["loss"] == pytest.approx(0.6931, abs=0.02)
    prompts = [f"{article(c)} {c} {s}" for c, s in sorted(HELD_OUT_COMBINATIONS)]
    few_step = {"num_steps": 4, "per_prompt": 8, "sampler": "consistency", "guidance_scale": 1.0}
    before = mean_reward(None, "shapes-alignment", prompts, **few_step)
    after = mean_reward(result.adapter_path, "shapes-alignment", prompts, **few_step)
    print(f"pso: 4-step alignment {before:.3f} -> {after:.3f}")
    assert after > before + 0.1, (before, after)


def test_seppo_learns_from_winning_images_alone(tmp_path):
    """SePPO on images of two shapes that include held-out colour-shape combinations, with
    reference samples from its own previous checkpoints as the other side: samples of such
    prompts align better with them (0.878 -> 0.929 with 20 steps; the base's weak spot there is
    binding each colour to its shape)."""
    data = {"dataset": "shapes", "options": {"count": 96, "split": "heldout", "num_objects": 2}}
    options = {"beta": 2000.0, "ref_strategy": "random", "ref_interval": 5, "num_steps": 4}
    result, logs = run(tmp_path, "seppo", options, steps=20, lr=1e-3, data=data, batch_size=8)
    assert logs[0]["loss"] == pytest.approx(0.6931, abs=0.02)  # the first reference is the policy itself
    assert {log["reference_step"] for log in logs} > {0.0}  # later references are earlier checkpoints
    prompts = sorted({s.caption for s in generate(200, seed=12, split="heldout", num_objects=2)})[:12]
    before = mean_reward(None, "shapes-alignment", prompts, per_prompt=4)
    after = mean_reward(result.adapter_path, "shapes-alignment", prompts, per_prompt=4)
    print(f"seppo: alignment {before:.3f} -> {after:.3f}")
    assert after > before + 0.03, (before, after)
