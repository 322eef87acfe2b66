"""PPAP (difforge-steer): the experts' mechanism on a tiny model and a toy classifier, classifier
guidance's step, save/load, ``difforge train-guiders`` / ``difforge guide`` and their errors.
The effect on the shapes world is re-measured in test_ppap_effects.py."""

import json

import pytest
import torch
from helpers import cli_error, run_cli

import difforge
from difforge.errors import WeightsError
from difforge_steer.ppap import (
    ExpertGuider,
    LatentClassifier,
    PPAPConfig,
    classifier_guidance,
    distill_experts,
    expert_agreement,
    expert_boundaries,
    train_classifier,
)
from difforge_steer.ppap.guidance import class_log_prob_gradient

LABELS = ("smooth", "checked")


def _texture_data(count: int = 256, seed: int = 0):
    """4-channel 8x8 inputs, flat (a random level per channel) or with a checkerboard on top: a
    clean task whose cue, fine texture, is what noise looks like."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(count, generator=generator) < 0.5).long()
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2 - 1).float()
    x = torch.randn(count, 4, 1, 1, generator=generator) * 0.5 + 0.05 * torch.randn(count, 4, 8, 8, generator=generator)
    x = x + labels.view(-1, 1, 1, 1) * checker
    return x, torch.nn.functional.one_hot(labels, 2).float()


@pytest.fixture(scope="module")
def clean_classifier():
    torch.manual_seed(0)
    x, targets = _texture_data()
    classifier = LatentClassifier(in_channels=4, labels=LABELS, channels=(8, 16))
    train_classifier(classifier, x, targets, steps=150, generator=torch.Generator().manual_seed(0))
    return classifier


def test_boundaries_split_the_timesteps_and_each_timestep_has_one_expert(clean_classifier):
    assert expert_boundaries(5) == [0, 200, 400, 600, 800, 1000]
    guider = ExpertGuider(clean_classifier, expert_boundaries(4, 100))
    assert [guider.expert_of(t) for t in (0, 24, 25, 74, 75, 99)] == [0, 0, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="rise from 0"):
        ExpertGuider(clean_classifier, [10, 5])


def test_experts_start_as_the_clean_classifier_and_distillation_moves_only_its_own_lora(clean_classifier):
    x, _ = _texture_data(64, seed=1)
    alphas = torch.linspace(0.999, 0.01, 100)
    untrained = ExpertGuider(clean_classifier, expert_boundaries(2, 100))
    for t in (10, 90):  # LoRA's B starts at zero
        torch.testing.assert_close(untrained.logits(x, t), clean_classifier(x))
    before = {n: p.clone() for n, p in clean_classifier.named_parameters()}
    guider = distill_experts(clean_classifier, x, alphas, PPAPConfig(num_experts=2, steps=30, batch_size=32),
                             generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p, before[n]) for n, p in clean_classifier.named_parameters())  # the input is not modified
    torch.testing.assert_close(guider.logits(x, None), clean_classifier(x))
    for i, t in enumerate((10, 90)):
        assert not torch.allclose(guider.logits(x, t), clean_classifier(x))
        moved = [p for p in guider.expert_parameters(i) if p.abs().sum() > 0]
        assert moved and all(f".{guider.expert_name(i)}." in n for n, p in guider.model.named_parameters()
                             if any(p is q for q in moved))


def test_the_high_noise_expert_agrees_with_the_teacher_where_the_clean_classifier_does_not(clean_classifier):
    """Data-free transfer on noised inputs: at the noisiest range the clean classifier is near
    chance on its own labels, the distilled expert well above it."""
    x, _ = _texture_data(512, seed=2)
    alphas = torch.logspace(0, -2.5, 100)
    guider = distill_experts(clean_classifier, x, alphas, PPAPConfig(num_experts=2, steps=200, batch_size=64),
                             generator=torch.Generator().manual_seed(0))
    noisy = expert_agreement(guider, x, alphas, generator=torch.Generator().manual_seed(1))[1]
    assert noisy["guider"] > noisy["clean classifier"] + 0.1, noisy


def test_guidance_adds_the_scaled_class_gradient_to_the_x0_estimate(clean_classifier):
    alphas = torch.linspace(0.999, 0.01, 1000)
    targets = torch.tensor([1, 1])

    def base_denoise(x, t, cond, extra):
        return 0.5 * x

    guidance = classifier_guidance(clean_classifier, targets, 3.0, alphas)
    guided, plain = guidance(base_denoise, None, None, 1.0), classifier_guidance(clean_classifier, targets, 0.0,
                                                                                 alphas)(base_denoise, None, None, 1.0)
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3)), torch.tensor([700, 700])
    gradient = class_log_prob_gradient(lambda v, _t: clean_classifier(v), x, 700, targets)
    torch.testing.assert_close(plain(x, t), 0.5 * x)
    torch.testing.assert_close(guided(x, t), 0.5 * x + 3.0 * (1 - alphas[700]) / alphas[700].sqrt() * gradient)
    logp = torch.log_softmax(clean_classifier(x + 1e-2 * gradient), -1).gather(1, targets.view(-1, 1))
    assert (logp > torch.log_softmax(clean_classifier(x), -1).gather(1, targets.view(-1, 1))).all()


def test_guider_round_trips_through_safetensors(clean_classifier, tmp_path):
    x, _ = _texture_data(16, seed=4)
    guider = distill_experts(clean_classifier, x, torch.linspace(0.99, 0.1, 50),
                             PPAPConfig(num_experts=3, steps=5, batch_size=8),
                             generator=torch.Generator().manual_seed(0))
    guider.save_pretrained(tmp_path / "guider")
    assert not list((tmp_path / "guider").rglob("*.bin")) and not list((tmp_path / "guider").rglob("*.pt"))
    loaded = ExpertGuider.from_pretrained(tmp_path / "guider")
    assert loaded.boundaries == guider.boundaries and loaded.clean.labels == list(LABELS)
    for t in (None, 5, 25, 45):
        torch.testing.assert_close(loaded.logits(x, t), guider.logits(x, t))
    with pytest.raises(WeightsError, match="not a PPAP guider folder"):
        ExpertGuider.from_pretrained(tmp_path)
    from safetensors.torch import save_file

    save_file({"base_model.model.other.lora_A.weight": torch.zeros(2, 2)},
              tmp_path / "guider" / "experts" / "expert_1" / "adapter_model.safetensors")
    with pytest.raises(WeightsError, match="expert_1.*1 tensors fit no layer"):
        ExpertGuider.from_pretrained(tmp_path / "guider")
    with pytest.raises(ValueError, match="no class 'purple'; its classes: smooth, checked"):
        loaded.clean.class_index("purple")


def test_train_guiders_and_guide_from_the_cli(tiny_sd_dir, tmp_path, capsys):
    """Both commands in a subprocess, as a user runs them; their error paths in-process (one line each)."""
    from difforge.cli import main

    def error(*args: str) -> str:
        return cli_error(capsys, *args)

    backbone = difforge.load(tiny_sd_dir)
    channels = backbone.sample_shape()[0]
    LatentClassifier(in_channels=channels, labels=LABELS, channels=(8,)).save_pretrained(tmp_path / "classifier")
    guiders = tmp_path / "guiders"
    result = run_cli("train-guiders", "--model", str(tiny_sd_dir), "--classifier", str(tmp_path / "classifier"),
                     "--out", str(guiders), "--samples", "8", "--sample-steps", "2", "--experts", "2", "--steps", "3")
    assert result.returncode == 0, result.stderr
    report = json.loads((guiders / "report.json").read_text())
    assert [row["timesteps"] for row in report["agreement"]] == [[0, 500], [500, 1000]]
    assert "already exists" in error("train-guiders", "--model", str(tiny_sd_dir), "--classifier",
                                     str(tmp_path / "classifier"), "--out", str(guiders))
    out = tmp_path / "guider.png"
    result = run_cli("guide", "--model", str(tiny_sd_dir), "--guider", str(guiders), "--target", "checked",
                     "--num-samples", "2", "--steps", "3", "--out", str(out))
    assert result.returncode == 0 and out.stat().st_size > 0, result.stderr
    out = tmp_path / "classifier.png"
    assert main(["guide", "--model", str(tiny_sd_dir), "--classifier", str(tmp_path / "classifier"), "--target",
                 "checked", "--num-samples", "2", "--steps", "3", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert "not a classifier folder" in error("guide", "--model", str(tiny_sd_dir), "--classifier", str(tmp_path),
                                              "--target", "x", "--out", str(tmp_path / "bad.png"))
    assert "no class 'purple'" in error("guide", "--model", str(tiny_sd_dir), "--guider", str(guiders), "--target",
                                        "purple", "--out", str(tmp_path / "bad.png"))
    LatentClassifier(in_channels=channels + 1, labels=LABELS, channels=(8,)).save_pretrained(tmp_path / "pixels")
    assert f"reads {channels + 1} channels, the model denoises {channels}" in error(
        "guide", "--model", str(tiny_sd_dir), "--classifier", str(tmp_path / "pixels"), "--target", "checked",
        "--out", str(tmp_path / "bad.png"))
    assert not (tmp_path / "bad.png").exists() and not list(tmp_path.glob(".guiders.partial-*"))
