"""DC-Solver's effect on the shapes world, re-measured on a few held-out prompts with the ratios
the stored sampler benchmark fitted (benchmarks/results/samplers.json)."""

import json
import sys

import torch
from helpers import ROOT

import difforge
from difforge.plugin_api import schedule_from_scheduler
from difforge_solvers.dc_solver import reference_trajectory

sys.path.insert(0, str(ROOT / "benchmarks"))
from samplers import GUIDANCE, HELDOUT_PROMPTS, RESULTS, prompts  # noqa: E402


def test_dc_solver_halves_unipcs_error_at_20_steps():
    """With the stored 20-step ratios (fitted on 10 calibration prompts), DC-Solver's samples of
    6 held-out prompts land closer to the ground-truth ODE solution than UniPC's (the benchmark:
    about half the RMSE at 20 steps; at 4-8 steps the compensation does worse, see docs/samplers.md)."""
    shapes = difforge.load("shapes-sd-tiny").eval()
    ratios = json.loads(RESULTS.read_text())["dc_ratios"]["20"]
    heldout = prompts(HELDOUT_PROMPTS, 6)
    noise = torch.randn((len(heldout), *shapes.sample_shape()), generator=torch.Generator().manual_seed(0))
    denoise = shapes.guided_denoise(shapes.encode_prompts(heldout), GUIDANCE, len(heldout))
    schedule = schedule_from_scheduler(shapes.scheduler, 20)
    samplers = difforge.get_registry("samplers")
    with torch.no_grad():
        truth = reference_trajectory(denoise, noise, schedule, shapes.scheduler.alphas_cumprod, fine_steps=100)[-1]
        unipc = samplers.get("unipc")(denoise, noise, schedule)
        dc = samplers.get("dc_solver")(denoise, noise, schedule, dc_ratios=ratios)

    def error(x):
        return (x - truth).pow(2).mean().sqrt().item()

    assert error(dc) < 0.75 * error(unipc)
