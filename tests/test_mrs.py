"""Mean-reverting diffusion and MR Sampler (difforge-solvers): the schedule's parameterisations,
the semi-analytic steps on data whose exact denoiser is known, and the equivalence of MR Sampler
with DPM-Solver++ on the standardised residual. Its effect on the zoo's shapes-sr-mr is checked
in test_mrs_effects.py."""

import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from helpers import ROOT, cli_error
from PIL import Image

from difforge.cli import main
from difforge.plugin_api import SamplingSchedule, to_uint8
from difforge_solvers.boundary import BoundarySearch, save_boundary
from difforge_solvers.cli import read_image
from difforge_solvers.dpm_solver import sample_dpmpp_2m
from difforge_solvers.mean_reverting import MeanRevertingDenoiser, MeanRevertingSchedule, load_mean_reverting
from difforge_solvers.mrs import sample_mr_euler, sample_mr_euler_maruyama, sample_mrs, search_mr_boundary

SCHEDULE = MeanRevertingSchedule(scale=0.5, alpha_min=0.02)


def gaussian_denoiser(schedule: MeanRevertingSchedule, data_mean: float, data_std: float, mean: torch.Tensor):
    """The exact data prediction ``E[x0 | x_t]`` when every pixel of ``x0`` is ``N(data_mean, data_std^2)``."""
    def denoise(x, t):
        alpha, sigma = schedule.alpha(t).float()[:, None], schedule.sigma(t).float()[:, None]
        residual_mean = data_mean - mean
        gain = alpha * data_std**2 / (alpha**2 * data_std**2 + sigma**2)
        return mean + residual_mean + gain * (x - mean - alpha * residual_mean)

    return denoise


def test_parameterisations_round_trip():
    x0, mean, noise = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 5)
    t = torch.tensor([0.1, 0.5, 0.97])
    xt = SCHEDULE.add_noise(x0, mean, noise, t)
    for prediction in ("epsilon", "sample", "v_prediction"):
        schedule = MeanRevertingSchedule(prediction=prediction)
        target = schedule.target(x0, mean, noise, t)
        assert torch.allclose(schedule.data_prediction(target, xt, mean, t), x0, atol=1e-4), prediction


def test_schedule_ends():
    ends = torch.tensor([0.0, 1.0])
    assert torch.allclose(SCHEDULE.alpha(ends), torch.tensor([1.0, 0.02], dtype=torch.float64))
    assert torch.allclose(SCHEDULE.sigma(ends), torch.tensor([0.0, 0.5 * (1 - 0.02**2) ** 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="prediction"):
        MeanRevertingSchedule(prediction="score")


def test_saved_schedule_round_trips(tmp_path):
    schedule = MeanRevertingSchedule(scale=0.3, alpha_min=0.05, prediction="v_prediction")
    schedule.save(tmp_path)
    assert MeanRevertingSchedule.from_pretrained(tmp_path) == schedule
    (tmp_path / "mean_reverting.json").write_text('{"scale": 0.3, "colour": 1}')
    with pytest.raises(ValueError, match="mean_reverting.json"):
        MeanRevertingSchedule.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not an MR diffusion model"):
        MeanRevertingSchedule.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize(("prediction", "stochastic"), [("data", False), ("data", True), ("noise", False)])
def test_exact_on_a_point_mass(prediction, stochastic):
    """With one clean image the data prediction is constant (and so is the noise prediction along
    an ODE path), so the semi-analytic step is the exact solution: the ODE keeps every sample's
    noise ``(x_t - mu - alpha_t (x0 - mu)) / sigma_t`` and the SDE keeps it standard normal; both
    end on the image. (Along an SDE path the noise prediction changes, so its step is not exact.)"""
    clean, mean = torch.full((1, 2000), 0.7), torch.full((1, 2000), -0.2)
    x = SCHEDULE.terminal(mean.expand(1, -1), generator=torch.Generator().manual_seed(0))
    start_noise = (x - mean - 0.02 * (clean - mean)) / SCHEDULE.sigma(torch.tensor(1.0)).float()
    seen = []

    def record(step, t, x, x0):
        times = SCHEDULE.times(5)
        alpha, sigma = SCHEDULE.alpha(times[step + 1]).float(), SCHEDULE.sigma(times[step + 1]).float()
        if sigma > 0:
            seen.append((x - mean - alpha * (clean - mean)) / sigma)

    out = sample_mrs(lambda x, t: clean.expand_as(x), x, mean, SCHEDULE, 5, prediction=prediction,
                     stochastic=stochastic, generator=torch.Generator().manual_seed(1), callback=record)
    assert torch.allclose(out, clean, atol=1e-5)
    assert len(seen) == 4
    for noise in seen:
        if stochastic:
            assert abs(noise.std().item() - 1) < 0.05 and abs(noise.mean().item()) < 0.05
        else:
            assert torch.allclose(noise, start_noise, atol=1e-3)


def test_data_ode_is_dpm_solver_on_the_standardised_residual():
    """MRS (data prediction, ODE, order 2) is DPM-Solver++(2M) run on ``z = (x - mu) / lambda``
    with ``alphas_cumprod = alpha_t^2``: the paper's semi-analytic solution in other coordinates."""
    generator = torch.Generator().manual_seed(0)
    mean, weight = torch.randn(4, 6, generator=generator), torch.randn(6, 6, generator=generator) * 0.5

    def denoise(x, t):
        return mean + torch.tanh((x - mean) @ weight) * (1 - 0.3 * t.float()[:, None])

    x = SCHEDULE.terminal(mean, generator=generator)
    steps = 6
    mrs = sample_mrs(denoise, x, mean, SCHEDULE, steps)
    times = SCHEDULE.times(steps)
    alphas = SCHEDULE.alpha(times).float() ** 2
    schedule = SamplingSchedule(timesteps=times[:-1].float(), alphas=alphas[:-1], alphas_prev=alphas[1:])
    scale = SCHEDULE.scale

    def denoise_z(z, t):
        return (denoise(mean + scale * z, t) - mean) / scale

    dpm = mean + scale * sample_dpmpp_2m(denoise_z, (x - mean) / scale, schedule)
    assert torch.allclose(mrs, dpm, atol=1e-4)


def test_on_gaussian_data_mrs_beats_euler_at_ten_steps():
    """Exact denoiser of Gaussian data: at 10 steps MR Sampler's samples have the data's moments
    (up to the 0.009 bias of starting from ``mu + sigma_1 eps``), Euler on the same ODE and
    Euler-Maruyama on the SDE do not; at 500 steps Euler-Maruyama does."""
    mean = torch.zeros(1, 4000)
    denoise = gaussian_denoiser(SCHEDULE, 0.6, 0.3, mean)
    x = SCHEDULE.terminal(mean, generator=torch.Generator().manual_seed(0))

    def error(sample):
        return abs(sample.mean().item() - 0.6) + abs(sample.std().item() - 0.3)

    def noise():
        return torch.Generator().manual_seed(1)

    mrs = error(sample_mrs(denoise, x, mean, SCHEDULE, 10))
    mrs_sde = error(sample_mrs(denoise, x, mean, SCHEDULE, 10, stochastic=True, generator=noise()))
    euler = error(sample_mr_euler(denoise, x, mean, SCHEDULE, 10))
    maruyama = error(sample_mr_euler_maruyama(denoise, x, mean, SCHEDULE, 10, generator=noise()))
    maruyama_long = error(sample_mr_euler_maruyama(denoise, x, mean, SCHEDULE, 500, generator=noise()))
    assert mrs < 0.025 and mrs_sde < 0.025
    assert euler > 3 * mrs and maruyama > 2 * mrs_sde
    assert maruyama_long < 0.01


def test_bad_options():
    with pytest.raises(ValueError, match="order 1 or 2"):
        sample_mrs(lambda x, t: x, torch.zeros(1, 2), torch.zeros(1, 2), SCHEDULE, 3, order=3)
    with pytest.raises(ValueError, match="at least one step"):
        sample_mrs(lambda x, t: x, torch.zeros(1, 2), torch.zeros(1, 2), SCHEDULE, 0)


# ------------------------------------------------------------------------------ difforge restore
def tiny_mr_model(directory):
    """A randomly initialised MR diffusion model of 8x8 images (the layout of the zoo's shapes-sr-mr)."""
    torch.manual_seed(0)
    UNet2DModel(sample_size=8, in_channels=6, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
                norm_num_groups=4).save_pretrained(directory / "unet", safe_serialization=True)
    SCHEDULE.save(directory)
    return directory


def save_png(path, size):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("sampler", ["mrs", "euler-maruyama", "euler-ode"])
def test_restore_writes_the_restorations_a_grid_and_a_report(tmp_path, sampler):
    model = tiny_mr_model(tmp_path / "model")
    small, clean = save_png(tmp_path / "small.png", 4), save_png(tmp_path / "clean.png", 8)
    out = tmp_path / "out" / "restored.png"
    assert main(["restore", "--model", str(model), "--input", str(small), "--sampler", sampler, "--steps", "3",
                 "--num-samples", "2", "--reference", str(clean), "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["nfe"] == 3
    assert report["outputs"] == [str(out.with_stem("restored-0")), str(out.with_stem("restored-1"))]
    assert len(report["psnr"]["restored"]) == 2 and report["psnr"]["input"] > 0
    assert Image.open(out.with_stem("restored-1")).size == (8, 8)
    assert out.with_name("restored.grid.png").exists()


def test_restore_is_the_python_api(tmp_path):
    """The command's restoration is sample_mrs on the bicubically upsampled input, from the seed's start."""
    model = tiny_mr_model(tmp_path / "model")
    small = save_png(tmp_path / "small.png", 4)
    assert main(["restore", "--model", str(model), "--input", str(small), "--steps", "4", "--seed", "3",
                 "--out", str(tmp_path / "r.png")]) == 0
    network, schedule = load_mean_reverting(model)
    upsampled = F.interpolate(read_image(str(small), "--input"), size=(8, 8), mode="bicubic", align_corners=False)
    mean = upsampled.clamp(-1, 1)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        start = schedule.terminal(mean, generator=generator)
        expected = sample_mrs(MeanRevertingDenoiser(network, schedule, mean), start, mean, schedule, 4,
                              generator=generator)
    written = torch.from_numpy(np.array(Image.open(tmp_path / "r.png")))
    assert (written.int() - torch.from_numpy(to_uint8(expected)[0]).int()).abs().max() <= 1


def test_restore_errors_name_the_file(tmp_path, capsys):
    not_mr = tmp_path / "plain"
    not_mr.mkdir()
    small = save_png(tmp_path / "small.png", 4)
    assert "not an MR diffusion model" in cli_error(capsys, "restore", "--model", str(not_mr), "--input", str(small))
    model = tiny_mr_model(tmp_path / "model")
    (tmp_path / "bad.png").write_text("not an image")
    err = cli_error(capsys, "restore", "--model", str(model), "--input", str(tmp_path / "bad.png"))
    assert f"cannot read image --input {tmp_path / 'bad.png'}" in err
    err = cli_error(capsys, "restore", "--model", str(model), "--input", str(small), "--reference", str(small),
                    "--out", str(tmp_path / "x.png"))
    assert "--reference" in err and "(4, 4) pixels" in err


def test_training_script_quick_run(tmp_path, monkeypatch):
    """The script's ``--quick`` run (in this process: its module, its ``main``) writes a loadable
    model, its card and logs, and refuses to train into a directory that holds a model."""
    import importlib.util

    script = ROOT / "packages" / "zoo" / "training" / "train_shapes_sr_mr.py"
    spec = importlib.util.spec_from_file_location("train_shapes_sr_mr", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "model"
    monkeypatch.setattr(sys, "argv", [str(script), "--quick", "--out", str(out)])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep the suite's thread setting
    module.main()
    assert MeanRevertingSchedule.from_pretrained(out) == MeanRevertingSchedule(0.5, 0.02, "v_prediction")
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"bicubic", "mrs_10"} and "| MR Sampler, 10 NFE |" in (out / "README.md").read_text()
    assert len(json.loads((out / "training_log.json").read_text())["losses"]) == 3
    with pytest.raises(SystemExit, match="already holds a model"):
        module.main()


def test_boundary_search_keeps_the_best_shared_start(tmp_path):
    """OBC for MR diffusion: every candidate noise starts every reference input; the chosen one is
    the best-scoring, and restoring from it reproduces its score. ``difforge restore --boundary``
    starts every sample from it."""
    model = tiny_mr_model(tmp_path / "model")
    network, schedule = load_mean_reverting(model)
    degraded = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    target = torch.zeros_like(degraded)

    def score(images):
        return -(images - target).pow(2).mean().item()

    found = search_mr_boundary(network, schedule, degraded, score, steps=3, candidates=5,
                               generator=torch.Generator().manual_seed(1))
    assert found.chosen == max(range(5), key=found.scores.__getitem__) and len(set(found.scores)) == 5
    with torch.no_grad():
        start = schedule.terminal(degraded, noise=found.boundary.expand_as(degraded))
        again = sample_mrs(MeanRevertingDenoiser(network, schedule, degraded), start, degraded, schedule, 3)
    assert score(again) == pytest.approx(max(found.scores), abs=1e-6)
    with pytest.raises(ValueError, match="SDE"):
        search_mr_boundary(network, schedule, degraded, score, steps=3, stochastic=True)

    boundary = save_boundary(tmp_path / "boundary.safetensors", found)
    small = save_png(tmp_path / "small.png", 4)
    for seed in ("0", "1"):
        assert main(["restore", "--model", str(model), "--input", str(small), "--steps", "3", "--seed", seed,
                     "--boundary", str(boundary), "--out", str(tmp_path / f"b{seed}.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b0.png")), np.asarray(Image.open(tmp_path / "b1.png")))


def test_restore_boundary_errors(tmp_path, capsys):
    model = tiny_mr_model(tmp_path / "model")
    small = save_png(tmp_path / "small.png", 4)
    wrong = save_boundary(tmp_path / "wrong.safetensors",
                          BoundarySearch(torch.zeros(3, 4, 4), [0.0], 0))
    err = cli_error(capsys, "restore", "--model", str(model), "--input", str(small), "--boundary", str(wrong))
    assert "--boundary" in err and "(3, 4, 4)" in err
    err = cli_error(capsys, "restore", "--model", str(model), "--input", str(small), "--boundary", str(wrong),
                    "--sampler", "euler-maruyama")
    assert "SDE samplers add noise" in err
