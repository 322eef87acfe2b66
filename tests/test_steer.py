"""Inference-time steering (difforge-steer): the mechanism of each method on a tiny model, the
``difforge_register_steering`` seam, ``difforge sample --steer`` and its errors. The effects on
the shapes world are re-measured in test_steer_effects.py."""

import json

import pytest
import torch
from helpers import brightness_reward, cli_error, run_cli

import difforge
from difforge.errors import RegistryError, UsageError
from difforge.plugin_api import ImageReward, Steered
from difforge_steer.fk import FKOptions, FKResampler
from difforge_steer.particles import Particles, effective_sample_size, resample


class Constant(ImageReward):
    """Every sample scores the same."""

    name = "constant"

    def score(self, images, prompts=None):
        return torch.ones(len(images))


@pytest.fixture(scope="module")
def tiny(tiny_sd_dir):
    return difforge.load(tiny_sd_dir).eval()


PROMPTS = ["a red circle", "a blue square"]


def _count_denoiser_rows(backbone):
    rows = []
    handle = backbone.denoiser.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    return rows, handle


def test_effective_sample_size_and_resampling_stay_within_each_group():
    assert effective_sample_size(torch.zeros(3, 4)).tolist() == pytest.approx([4.0] * 3)
    one_hot = torch.tensor([[0.0, -1e9, -1e9], [-1e9, -1e9, 0.0]])
    assert effective_sample_size(one_hot).tolist() == pytest.approx([1.0, 1.0])
    generator = torch.Generator().manual_seed(0)
    for scheme in ("multinomial", "systematic"):
        assert resample(one_hot, generator, scheme).tolist() == [[0, 0, 0], [2, 2, 2]]
        ancestors = resample(torch.randn(5, 8, generator=generator), generator, scheme)
        assert ancestors.shape == (5, 8) and ancestors.min() >= 0 and ancestors.max() < 8
    # systematic resampling keeps each particle's expected count within one of k * w
    log_w = torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.125]]))
    counts = torch.bincount(resample(log_w, generator, "systematic")[0], minlength=4)
    assert ((counts - 4 * log_w.exp()[0]).abs() < 1).all()
    assert Particles(["a", "b"], 1, 3).rows_of(torch.tensor([[2], [0]])).tolist() == [2, 3]


def test_fk_weights_are_normalised_and_reset_where_a_group_was_resampled():
    particles = Particles(["a", "b"], 1, 4)
    scores = iter([torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0])] * 3)
    resampler = FKResampler(particles, lambda x0: next(scores), FKOptions(potential="immediate", lmbda=1.0),
                            num_steps=10, generator=torch.Generator().manual_seed(0))
    x = torch.arange(8.0)[:, None]
    out = resampler(step=0, t=torch.tensor(999), x=x, x0=x)
    assert out is not None and resampler.resampled_steps == [0]
    assert out[:4, 0].tolist() == [0.0, 1.0, 2.0, 3.0]  # uniform weights: the first group is left alone
    assert set(out[4:, 0].tolist()) <= {4.0, 5.0, 6.0, 7.0}  # the second resampled among its own
    assert resampler.log_weights[1].tolist() == [0.0] * 4
    weights = torch.softmax(resampler.log_weights, dim=-1)
    assert torch.allclose(weights.sum(-1), torch.ones(2, dtype=weights.dtype))
    assert resampler(step=1, t=torch.tensor(900), x=x, x0=x) is None  # not a scheduled step


@pytest.mark.parametrize("potential", ["max", "sum", "difference", "immediate"])
def test_fk_with_a_constant_reward_is_plain_sampling(tiny, potential):
    """Uniform weights never trigger resampling, so each output is the first particle's plain
    ancestral sample from the same noise."""
    steered = tiny_steer(tiny, "fk", Constant(), particles=3, potential=potential, resample_every=1)
    plain = tiny.sample([p for p in PROMPTS for _ in range(3)], num_steps=6, sampler="ddpm", guidance_scale=2.0,
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(steered.samples, plain[[0, 3]])
    assert steered.nfe == 18 and steered.rewards.tolist() == [1.0, 1.0]


def test_fk_resampling_raises_the_reward_of_the_particles(tiny):
    steered = tiny_steer(tiny, "fk", brightness_reward(), particles=6, lmbda=5000.0, resample_every=1, select="sample")
    plain = tiny.sample([p for p in PROMPTS for _ in range(6)], num_steps=6, sampler="ddpm", guidance_scale=2.0,
                        generator=torch.Generator().manual_seed(0))
    assert (steered.rewards > brightness_reward()(plain).reshape(2, 6).mean(1)).all()


def test_svdd_with_one_candidate_is_ancestral_sampling_and_counts_its_evaluations(tiny):
    plain = tiny.sample(PROMPTS, num_steps=6, sampler="ddpm", guidance_scale=2.0,
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(tiny_steer(tiny, "svdd", Constant(), particles=1).samples, plain)
    rows, handle = _count_denoiser_rows(tiny)
    try:
        steered = tiny_steer(tiny, "svdd", brightness_reward(), particles=4)
    finally:
        handle.remove()
    assert steered.nfe == 1 + 5 * 4
    assert sum(rows) == 2 * len(PROMPTS) * steered.nfe  # guidance: conditional and unconditional halves


def test_svdd_keeps_the_highest_value_candidate_at_every_step(tiny):
    steered = tiny_steer(tiny, "svdd", brightness_reward(), particles=6)
    plain = tiny_steer(tiny, "svdd", brightness_reward(), particles=1)
    assert (steered.rewards > plain.rewards).all()


def test_best_of_n_and_fk_spend_the_evaluations_they_report(tiny):
    for method in ("best-of-n", "fk"):
        rows, handle = _count_denoiser_rows(tiny)
        try:
            steered = tiny_steer(tiny, method, brightness_reward(), particles=4)
        finally:
            handle.remove()
        assert isinstance(steered, Steered) and steered.samples.shape == (2, 3, 32, 32)
        assert sum(rows) == 2 * len(PROMPTS) * steered.nfe, method
    best = tiny_steer(tiny, "best-of-n", brightness_reward(), particles=4)
    plain = tiny.sample([p for p in PROMPTS for _ in range(4)], num_steps=6, guidance_scale=2.0,
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(best.rewards, brightness_reward()(plain).reshape(2, 4).max(1).values)


def tiny_steer(backbone, method, reward, particles, **options):
    steering = difforge.get_registry("steering").get(method)
    return steering(backbone, PROMPTS, reward=reward, particles=particles, num_steps=6, guidance_scale=2.0,
                    generator=torch.Generator().manual_seed(0), **options)


def test_steering_refuses_what_it_cannot_do_in_one_line(tiny):
    with pytest.raises(UsageError, match="sampler 'ddim' is deterministic"):
        tiny_steer(tiny, "fk", Constant(), 2, sampler="ddim", eta=0.0)
    with pytest.raises(UsageError, match=r"steering 'fk': potential: Input should be"):
        tiny_steer(tiny, "fk", Constant(), 2, potential="bogus")
    with pytest.raises(UsageError, match="steering 'svdd': particle"):
        tiny_steer(tiny, "svdd", Constant(), 2, particle=3)
    with pytest.raises(UsageError, match="needs a reward"):
        difforge.steer(tiny, PROMPTS, method="fk")
    with pytest.raises(RegistryError, match="bogus"):
        difforge.steer(tiny, PROMPTS, method="bogus", reward="jpeg-compressibility")


def test_difforge_register_steering_and_the_cli(tiny_sd_dir, tmp_path, capsys):
    assert {"fk", "svdd", "best-of-n"} <= set(difforge.get_registry("steering").names())
    out = tmp_path / "steered.png"
    result = run_cli("sample", "--model", str(tiny_sd_dir), "--prompt", "a red circle", "--steps", "4",
                     "--steer", "fk", "--reward", "jpeg-compressibility", "--particles", "3",
                     "--steer-option", "potential=difference", "--steer-option", "lmbda=2",
                     "--guidance", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.with_suffix(".json").read_text())["steering"]
    assert report["method"] == "fk" and report["nfe"] == 12 and len(report["rewards"]) == 1
    assert out.stat().st_size > 0
    assert "KEY=VALUE" in cli_error(capsys, "sample", "--model", str(tiny_sd_dir), "--prompt", "x", "--steer", "fk",
                                    "--reward", "jpeg-compressibility", "--steer-option", "lmbda",
                                    "--out", str(tmp_path / "bad.png"))
    assert not (tmp_path / "bad.png").exists()


def test_steering_stacks_on_an_adapter(lora_config, tiny_sd_dir, tmp_path):
    """FK on a LoRA-loaded model steers that model: with a constant reward it is exactly the
    LoRA's own ancestral sampling, and the CLI takes --adapter with --steer."""
    adapter = difforge.train(lora_config).adapter_path
    tuned = difforge.load(tiny_sd_dir, adapters=[(adapter, 1.0)]).eval()
    steered = tiny_steer(tuned, "fk", Constant(), particles=2)
    plain = tuned.sample([p for p in PROMPTS for _ in range(2)], num_steps=6, sampler="ddpm", guidance_scale=2.0,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(steered.samples, plain[[0, 2]])
    base = difforge.load(tiny_sd_dir).eval()
    assert not torch.equal(tiny_steer(base, "fk", Constant(), particles=2).samples, steered.samples)
    out = tmp_path / "stacked.png"
    from difforge.cli import main

    assert main(["sample", "--model", str(tiny_sd_dir), "--adapter", str(adapter), "--prompt", "a red circle",
                 "--steps", "3", "--steer", "svdd", "--reward", "colourfulness", "--particles", "2",
                 "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["steering"]["nfe"] == 1 + 2 * 2


def test_the_steer_package_passes_the_plugin_conformance_check():
    from difforge_testkit import check_plugin

    assert check_plugin("difforge-steer") == {"steering": ["best-of-n", "fk", "svdd"],
                                              "commands": ["guide", "train-guiders"]}
