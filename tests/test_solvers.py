"""Fast ODE solvers (difforge-solvers): DPM-Solver++(2M) and UniPC give diffusers' samples on
one schedule, DC-Solver's dynamic compensation and its ratio fit, the sampler registry, and
``difforge sample --sampler ... --sampler-option``. The effect of DC-Solver on the shapes world
is re-measured in test_solver_effects.py."""

import json

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler
from helpers import run_cli

import difforge
from difforge.errors import UsageError
from difforge.plugin_api import SamplingSchedule, schedule_from_scheduler
from difforge_solvers.dc_solver import (
    dynamic_compensation,
    fit_dc_ratios,
    load_dc_ratios,
    reference_trajectory,
    refined_schedule,
    sample_dc_solver,
    save_dc_ratios,
)
from difforge_solvers.dpm_solver import sample_dpmpp_2m
from difforge_solvers.unipc import sample_unipc

#: the scheduler of the zoo's shapes-sd-tiny
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                timestep_spacing="leading", steps_offset=1)


def make_denoiser(seed: int = 0, dim: int = 8):
    """A smooth, time-dependent, nonlinear ``x0`` predictor on ``(B, dim)`` samples."""
    weight = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed)) * 0.4

    def denoise(x, t):
        return torch.tanh(x @ weight) * (1 - t.float()[:, None] / 1500) + 0.1 * torch.sin(t.float()[:, None] / 150)

    return denoise


def diffusers_sample(scheduler, denoise, noise, num_steps):
    scheduler.set_timesteps(num_steps)
    x = noise.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(denoise(x, t.reshape(1).expand(len(x))), t, x).prev_sample
    return x


@pytest.mark.parametrize("num_steps", [4, 7, 12, 20])
@pytest.mark.parametrize(("scheduler_class", "ours", "options"), [
    (DPMSolverMultistepScheduler, sample_dpmpp_2m, {}),
    (UniPCMultistepScheduler, sample_unipc, {}),
    (UniPCMultistepScheduler, sample_unipc, {"solver_order": 3}),
    (UniPCMultistepScheduler, sample_unipc, {"solver_type": "bh1", "final_sigmas_type": "sigma_min"}),
])
def test_solvers_give_diffusers_samples(scheduler_class, ours, options, num_steps):
    """On the same schedule and denoiser, the pure-function solvers reproduce diffusers' own
    schedulers step for step (diffusers told the model predicts the clean sample). UniPC-bh1 is
    compared on a schedule ending at the smallest training noise level: diffusers' bh1 returns
    NaN for a last step into sigma = 0 (its B(h) = h is infinite there)."""
    denoise, noise = make_denoiser(), torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    scheduler = scheduler_class(**SCHEDULE, prediction_type="sample", **options)
    expected = diffusers_sample(scheduler, denoise, noise, num_steps)
    ours_options = {"order": options["solver_order"]} if "solver_order" in options else {}
    schedule = schedule_from_scheduler(scheduler, num_steps)
    if "solver_type" in options:
        ours_options["variant"] = options["solver_type"]
        last = scheduler.alphas_cumprod[:1].float()
        schedule = SamplingSchedule(timesteps=schedule.timesteps, alphas=schedule.alphas,
                                    alphas_prev=torch.cat([schedule.alphas_prev[:-1], last]))
    got = ours(denoise, noise.clone(), schedule, **ours_options)
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=1e-5)


def test_a_replacing_callback_is_kept_uncorrected():
    """UniPC's corrector would redo the step a steering callback replaced; it skips it instead."""
    denoise, noise = make_denoiser(), torch.randn(2, 8, generator=torch.Generator().manual_seed(2))
    schedule = schedule_from_scheduler(UniPCMultistepScheduler(**SCHEDULE), 6)
    seen = {}

    def replace_at_two(step, t, x, x0):
        if step == 2:
            return torch.zeros_like(x)
        if step == 3:
            seen["x0"] = x0

    sample_unipc(denoise, noise, schedule, callback=replace_at_two)
    zeros_x0 = denoise(torch.zeros_like(noise), torch.full((2,), int(schedule.timesteps[3])))
    torch.testing.assert_close(seen["x0"], zeros_x0)


def test_solvers_need_a_variance_preserving_schedule():
    flow = SamplingSchedule(timesteps=torch.tensor([1.0, 0.5]), sigmas=torch.tensor([1.0, 0.5, 0.0]))
    for sampler in (sample_dpmpp_2m, sample_unipc):
        with pytest.raises(ValueError, match="variance-preserving"):
            sampler(make_denoiser(), torch.zeros(1, 8), flow)


def test_dynamic_compensation_interpolates_exactly():
    """Ratio 1 gives back the latest prediction; a trajectory quadratic in t is interpolated
    exactly at the shifted time (the Lagrange form of DC-Solver's Eq. 11)."""
    times = [900.0, 700.0, 500.0]
    a, b, c = (torch.randn(4, generator=torch.Generator().manual_seed(s)) for s in range(3))

    def curve(t):
        return a + b * (t / 1000) + c * (t / 1000) ** 2

    outputs = [curve(t) for t in times]
    torch.testing.assert_close(dynamic_compensation(outputs, times, 1.0), outputs[-1])
    for ratio in (0.6, 0.9, 1.3):
        torch.testing.assert_close(dynamic_compensation(outputs, times, ratio), curve(700.0 + ratio * (500.0 - 700.0)))


def test_dc_solver_with_unit_ratios_is_unipc():
    denoise, noise = make_denoiser(), torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    schedule = schedule_from_scheduler(UniPCMultistepScheduler(**SCHEDULE), 8)
    assert torch.equal(sample_dc_solver(denoise, noise, schedule, dc_ratios=[1.0] * 8),
                       sample_unipc(denoise, noise, schedule))
    changed = sample_dc_solver(denoise, noise, schedule, dc_ratios=[1.0, 1.0, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert not torch.equal(changed, sample_unipc(denoise, noise, schedule))


def test_reference_trajectory_passes_through_every_step():
    scheduler = UniPCMultistepScheduler(**SCHEDULE)
    schedule = schedule_from_scheduler(scheduler, 5)
    fine = refined_schedule(schedule, scheduler.alphas_cumprod, fine_steps=50)
    assert set(schedule.timesteps.tolist()) <= set(fine.timesteps.tolist())
    assert fine.timesteps[0] == schedule.timesteps[0] and fine.alphas_prev[-1] == schedule.alphas_prev[-1]
    assert (fine.timesteps[:-1] > fine.timesteps[1:]).all()
    denoise, noise = make_denoiser(), torch.randn(2, 8, generator=torch.Generator().manual_seed(4))
    reference = reference_trajectory(denoise, noise, schedule, scheduler.alphas_cumprod, fine_steps=50)
    assert reference.shape == (5, 2, 8)
    torch.testing.assert_close(reference[-1], sample_dpmpp_2m(denoise, noise, fine))


def test_fitted_ratios_pull_unseen_noises_toward_the_reference():
    """The ratios fitted on 10 noises bring UniPC's 5-step samples of 10 other noises closer to
    the finely solved trajectory (RMSE 0.023 against 0.027 when written); steps before three
    predictions exist keep ratio 1."""
    scheduler = UniPCMultistepScheduler(**SCHEDULE)
    schedule = schedule_from_scheduler(scheduler, 5)
    denoise = make_denoiser(seed=5)
    fit_noise, test_noise = torch.randn(2, 10, 8, generator=torch.Generator().manual_seed(6))
    reference = reference_trajectory(denoise, fit_noise, schedule, scheduler.alphas_cumprod)
    ratios = fit_dc_ratios(denoise, fit_noise, schedule, reference)
    assert len(ratios) == 5 and ratios[:2] == [1.0, 1.0] and any(r != 1.0 for r in ratios)
    assert all(0.5 <= r <= 1.5 for r in ratios)
    truth = reference_trajectory(denoise, test_noise, schedule, scheduler.alphas_cumprod)[-1]

    def error(x):
        return (x - truth).pow(2).mean().sqrt().item()

    assert error(sample_dc_solver(denoise, test_noise, schedule, dc_ratios=ratios)) < \
        0.95 * error(sample_unipc(denoise, test_noise, schedule))


def test_dc_ratio_errors_name_the_source(tmp_path):
    denoise, noise = make_denoiser(), torch.zeros(1, 8)
    schedule = schedule_from_scheduler(UniPCMultistepScheduler(**SCHEDULE), 4)
    with pytest.raises(UsageError, match="needs its compensation ratios"):
        sample_dc_solver(denoise, noise, schedule)
    with pytest.raises(UsageError, match="3 DC-Solver ratios for a 4-step"):
        sample_dc_solver(denoise, noise, schedule, dc_ratios=[1.0, 1.0, 1.0])
    path = save_dc_ratios(tmp_path / "ratios.json", {6: [1.0] * 6}, model="tiny")
    assert load_dc_ratios(path) == {"6": [1.0] * 6}
    with pytest.raises(UsageError, match=r"ratios.json: no DC-Solver ratios for 4 steps \(it has 6\)"):
        sample_dc_solver(denoise, noise, schedule, dc_ratios=path)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(UsageError, match="bad.json: not a DC-Solver ratios file"):
        sample_dc_solver(denoise, noise, schedule, dc_ratios=tmp_path / "bad.json")
    with pytest.raises(UsageError, match="missing.json: no such"):
        sample_dc_solver(denoise, noise, schedule, dc_ratios=tmp_path / "missing.json")


def test_the_solvers_are_registered_samplers_of_the_cli(tiny_sd_dir, tmp_path):
    registry = difforge.get_registry("samplers")
    assert {"dpmpp_2m", "unipc", "dc_solver"} <= set(registry.names())
    tiny = difforge.load(tiny_sd_dir).eval()
    for name in ("dpmpp_2m", "unipc"):
        images = tiny.sample(["a red circle"], num_steps=4, sampler=name, generator=torch.Generator().manual_seed(0))
        assert images.shape[0] == 1 and torch.isfinite(images).all()
    ratios = save_dc_ratios(tmp_path / "ratios.json", {4: [1.0, 1.0, 0.9, 1.0]})
    out = tmp_path / "dc.png"
    result = run_cli("sample", "--model", str(tiny_sd_dir), "--prompt", "a red circle", "--steps", "4",
                     "--sampler", "dc_solver", "--sampler-option", f"dc_ratios={ratios}", "--out", str(out),
                     "--metric", "pixel-statistics")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0 and json.loads(out.with_suffix(".json").read_text())
    with pytest.raises(UsageError, match="dc_ratios"):
        difforge.sample(tiny, ["x"], num_steps=4, sampler="dc_solver")
    with pytest.raises(UsageError, match=r"sampler 'unipc' has no option 'dc_ratios' \(its options: order, "
                                         r"variant, lower_order_final\)"):
        difforge.sample(str(tiny_sd_dir), ["x"], sampler="unipc", sampler_options={"dc_ratios": 1})
    with pytest.raises(UsageError, match="sampler options apply to plain sampling"):
        difforge.sample(tiny, ["x"], steering="fk", reward="jpeg-compressibility", sampler_options={"eta": 1})


def test_search_writes_ratios_the_sampler_reads(tiny_sd_dir, tmp_path, capsys):
    """``python -m difforge_solvers.search`` fits one list per step count and ``dc_solver`` reads
    the file; a missing prompts file is one line naming it."""
    from difforge_solvers.search import main

    prompts = tmp_path / "calibration.txt"
    prompts.write_text("a red circle\na blue square on the left\n")
    out = tmp_path / "dc_ratios.json"
    assert main(["--model", str(tiny_sd_dir), "--prompts", str(prompts), "--steps", "4", "5", "--fine-steps", "20",
                 "--guidance", "2", "--out", str(out)]) == 0
    ratios = load_dc_ratios(out)
    assert sorted(ratios) == ["4", "5"] and [len(ratios["4"]), len(ratios["5"])] == [4, 5]
    assert ratios["5"][:2] == [1.0, 1.0] and all(0.5 <= r <= 1.5 for r in ratios["5"])
    assert json.loads(out.read_text())["guidance_scale"] == 2.0
    tiny = difforge.load(tiny_sd_dir).eval()
    images = tiny.sample(["a red circle"], num_steps=5, sampler="dc_solver", dc_ratios=str(out),
                         generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(images).all()
    assert main(["--model", str(tiny_sd_dir), "--prompts", str(tmp_path / "none.txt"), "--steps", "4",
                 "--out", str(tmp_path / "x.json")]) == 1
    assert "none.txt: no such prompts file" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
