"""MR Sampler's effect on the zoo's shapes-sr-mr (4x super-resolution of held-out scenes): what
the stored benchmark (benchmarks/results/restoration.json, 3 seeds) shows, and a spot of it
re-measured exactly (seed 0's deterministic and stochastic rows at the smallest NFE)."""

import json

import pytest
import torch
from helpers import benchmark_module

import difforge_zoo
from difforge_solvers.mean_reverting import load_mean_reverting
from difforge_zoo.restoration import evaluation_task

BENCHMARK = benchmark_module("restoration")
STORED = json.loads(BENCHMARK.RESULTS.read_text())


def summary(method: str, nfe: int) -> dict:
    return next(r for r in STORED["summary"] if (r["method"], r["nfe"]) == (method, nfe))


def psnr(method: str, nfe: int) -> float:
    return summary(method, nfe)["psnr"][0]


def test_the_stored_results_are_of_the_committed_model():
    assert STORED["model"] == benchmark_module("worker").model_fingerprint(BENCHMARK.MODEL)
    assert len(STORED["seeds"]) == 3 and STORED["scenes"] >= 128


def test_mr_sampler_at_few_steps_beats_the_samplers_mr_diffusion_otherwise_uses():
    """What docs/samplers.md states, measured over 3 seeds."""
    for nfe in (5, 10, 20):
        assert psnr("mrs-data-ode", nfe) > psnr("euler-maruyama", nfe) + 1
        assert psnr("mrs-data-ode", nfe) > psnr("euler-ode", nfe) + 1
        assert summary("mrs-data-ode", nfe)["ode_rmse"][0] < summary("euler-ode", nfe)["ode_rmse"][0]
    # the paper's speed-up: 20 steps of MR Sampler are level with 100 of Euler-Maruyama, 10 within 1 dB
    assert psnr("mrs-data-ode", 20) >= psnr("euler-maruyama", 100) - 0.3
    assert psnr("mrs-data-ode", 10) >= psnr("euler-maruyama", 100) - 1.0
    assert psnr("bicubic", 0) < min(psnr("mrs-data-ode", nfe) for nfe in (5, 10, 20))
    # the paper's instability of noise prediction at few steps does not show on this model
    assert all(abs(psnr("mrs-noise-ode", nfe) - psnr("mrs-data-ode", nfe)) < 0.2 for nfe in (5, 10, 20))


def test_an_optimal_boundary_condition_lifts_held_out_restorations():
    """Optimal boundary conditions on their paper's task: one start noise searched on 16 reference
    scenes raises held-out PSNR over random starts at the same NFE, on every seed."""
    for nfe in BENCHMARK.OBC_NFES:
        assert psnr("obc", nfe) > psnr("mrs-data-ode", nfe) + 1
        for seed in STORED["seeds"]:
            rows = {r["method"]: r for r in STORED["rows"] if (r["nfe"], r["seed"]) == (nfe, seed)}
            assert rows["obc"]["psnr"] > rows["mrs-data-ode"]["psnr"]


@pytest.mark.parametrize(("method", "nfe"), [("mrs-data-ode", 5), ("mrs-data-sde", 5), ("euler-maruyama", 5)])
def test_a_spot_of_the_stored_rows_is_re_measured(method, nfe):
    torch.set_num_threads(2)
    network, schedule = load_mean_reverting(difforge_zoo.load(BENCHMARK.MODEL))
    scenes, clean, mean = evaluation_task(STORED["scenes"])
    stored = next(r for r in STORED["rows"] if (r["method"], r["nfe"], r["seed"]) == (method, nfe, 0))
    images = BENCHMARK.restore(network, schedule, mean, method, nfe, 0)
    measured = BENCHMARK.scored(images, clean, scenes)
    assert measured["per_scene_psnr"] == pytest.approx(stored["per_scene_psnr"], abs=2e-3)
    assert measured["recovered"] == stored["recovered"]
