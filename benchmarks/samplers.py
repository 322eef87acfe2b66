"""Sample quality against denoiser evaluations for every ODE sampler (difforge-solvers).

Table 2 of the steering issue: on shapes-sd-tiny (guidance 4, the 24 held-out two-shape prompts
of the alignment benchmark), each sampler at NFE 4, 6, 8, 10 and 20 from the same noises as

| sampler | from | what it is |
|---|---|---|
| ddim | the core | DDIM, first order (Song et al. 2021) |
| euler | the core | Euler on the probability-flow ODE in sigma (Karras et al. 2022) |
| dpm-solver++ | diffusers `DPMSolverMultistepScheduler` | DPM-Solver++(2M), the anchor |
| unipc | diffusers `UniPCMultistepScheduler` | UniPC-bh2, predictor-corrector, the anchor |
| dc-solver | difforge-solvers `dc_solver` | UniPC with DC-Solver's dynamic compensation |

The anchors run through diffusers' own schedulers (the model's scheduler config, told the
model predicts the clean sample); difforge-solvers' `dpmpp_2m` and `unipc` give the same
samples to 2e-6 (tests/test_solvers.py), so they have no rows of their own. DC-Solver's ratios
are fitted per NFE on 10 calibration prompts of the alignment benchmark's training prompts
(disjoint from the held-out prompts) with their own noise, against DPM-Solver++(2M) on a
``--fine-steps`` grid. Measured per sample:

- ``rmse``: the distance of the final latent from the ground truth of the same noise
  (DPM-Solver++(2M) on the ``--fine-steps`` grid through the sampler's own timesteps), root
  mean square over latent entries: how well the sampler solves the ODE (DC-Solver's metric);
- ``alignment``: the shapes-alignment reward of the decoded image (the ground truth scores
  ``reference_alignment``).

How far the ground truth itself is from the ODE's solution is bounded by ``reference_error``,
the RMSE between it and the same solver on a grid half as fine (second order: the error of
the fine grid is about a quarter of that).

Each seed draws other noise for the same 24 prompts; the tables give mean ± std over 3 seeds.

    python benchmarks/samplers.py            # all samplers, NFE 4-20, 3 seeds (~20 min on 2 CPU cores)
    python benchmarks/samplers.py --tables   # print the tables of the results file
"""  # noqa: E501 (the samplers table)

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from worker import mean_std, results_arguments, stored_results, write_results  # noqa: E402

RESULTS = HERE / "results" / "samplers.json"
HELDOUT_PROMPTS = ROOT / "examples" / "configs" / "alignment" / "prompts_heldout.txt"
CALIBRATION_PROMPTS = ROOT / "examples" / "configs" / "alignment" / "prompts_train.txt"
SAMPLERS = ("ddim", "euler", "dpm-solver++", "unipc", "dc-solver")
NFES = (4, 6, 8, 10, 20)
GUIDANCE = 4.0
CALIBRATION_SIZE = 10
CALIBRATION_SEED = 1234


def prompts(path: Path, limit: int | None = None) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()][:limit]


def diffusers_sampler(scheduler_class):
    """A pure-function sampler that walks a diffusers scheduler made from the model's config."""
    import torch

    def sample(denoise, noise, schedule, *, scheduler_config, num_steps):
        scheduler = scheduler_class.from_config(scheduler_config, prediction_type="sample")
        scheduler.set_timesteps(num_steps)
        x = noise
        for t in scheduler.timesteps:
            x = scheduler.step(denoise(x, t.reshape(1).expand(len(x)).to(x.device)), t, x).prev_sample
        return x

    return torch.no_grad()(sample)


def fit_ratios(backbone, nfes: list[int], fine_steps: int, calibration_size: int) -> tuple[dict, float]:
    """DC-Solver's ratios per NFE on the calibration prompts, and the seconds the fit took."""
    from difforge_solvers import search_dc_ratios

    start = time.perf_counter()
    calibration = prompts(CALIBRATION_PROMPTS, calibration_size)
    ratios = {str(n): search_dc_ratios(backbone, calibration, n, guidance_scale=GUIDANCE, seed=CALIBRATION_SEED,
                                       fine_steps=fine_steps) for n in nfes}
    return ratios, time.perf_counter() - start


def measure_seed(backbone, seed: int, samplers: list[str], nfes: list[int], ratios: dict,
                 fine_steps: int, outputs: int) -> list[dict]:
    """Every sampler at every NFE on the first ``outputs`` held-out prompts with the noise of ``seed``."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    import difforge
    from difforge.plugin_api import schedule_from_scheduler
    from difforge_solvers.dc_solver import reference_trajectory

    heldout = prompts(HELDOUT_PROMPTS, outputs)
    reward = difforge.get_registry("rewards").get("shapes-alignment")
    registry = difforge.get_registry("samplers")
    noise = torch.randn((len(heldout), *backbone.sample_shape()), generator=torch.Generator().manual_seed(seed))
    denoise = backbone.guided_denoise(backbone.encode_prompts(heldout), GUIDANCE, len(heldout))
    anchors = {"dpm-solver++": diffusers_sampler(DPMSolverMultistepScheduler),
               "unipc": diffusers_sampler(UniPCMultistepScheduler)}
    rows = []
    for n in nfes:
        schedule = schedule_from_scheduler(backbone.scheduler, n)
        truth = reference_trajectory(denoise, noise, schedule, backbone.scheduler.alphas_cumprod, fine_steps)[-1]
        coarser = reference_trajectory(denoise, noise, schedule, backbone.scheduler.alphas_cumprod, fine_steps // 2)[-1]
        reference_error = (coarser - truth).pow(2).mean().sqrt().item()
        truth_alignment = reward(backbone.decode(truth).clamp(-1, 1).float(), heldout).mean().item()
        for name in samplers:
            start = time.perf_counter()
            with torch.no_grad():
                if name in anchors:
                    latents = anchors[name](denoise, noise, schedule, scheduler_config=backbone.scheduler.config,
                                            num_steps=n)
                elif name == "dc-solver":
                    latents = registry.get("dc_solver")(denoise, noise, schedule, dc_ratios=ratios[str(n)])
                else:
                    latents = registry.get(name)(denoise, noise, schedule)
                images = backbone.decode(latents).clamp(-1, 1).float()
            seconds = time.perf_counter() - start
            row = {"sampler": name, "nfe": n, "seed": seed, "outputs": len(heldout), "seconds": round(seconds, 1),
                   "rmse": (latents - truth).pow(2).mean().sqrt().item(),
                   "alignment": reward(images, heldout).mean().item(), "reference_alignment": truth_alignment,
                   "reference_error": reference_error}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """``{sampler: {nfe: {"rmse": [mean, std], "alignment": [mean, std], "seeds": k}}}`` over seeds,
    and ``reference_alignment`` and ``reference_error`` per NFE."""
    summary: dict = {"samplers": {}, "reference_alignment": {}, "reference_error": {}}
    for row in rows:
        summary["samplers"].setdefault(row["sampler"], {}).setdefault(str(row["nfe"]), []).append(row)
        for key in ("reference_alignment", "reference_error"):
            summary[key].setdefault(str(row["nfe"]), {})[row["seed"]] = row[key]
    for sampler, by_nfe in summary["samplers"].items():
        summary["samplers"][sampler] = {
            nfe: {"rmse": mean_std([r["rmse"] for r in group]), "alignment": mean_std([r["alignment"] for r in group]),
                  "seeds": len(group)} for nfe, group in by_nfe.items()}
    for key in ("reference_alignment", "reference_error"):
        summary[key] = {nfe: mean_std(list(by_seed.values())) for nfe, by_seed in summary[key].items()}
    return summary


def tables(results: dict) -> str:
    """Table 2: latent RMSE from the ground truth, then shapes-alignment, per sampler and NFE."""
    summary = results["summary"]
    nfes = sorted({int(n) for by_nfe in summary["samplers"].values() for n in by_nfe})
    header = "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |"
    rule = "|---|" + "---|" * len(nfes)
    seeds = max(entry["seeds"] for by_nfe in summary["samplers"].values() for entry in by_nfe.values())
    out = []
    for metric, title in (("rmse", "Latent RMSE from the ground-truth ODE solution (lower is better)"),
                          ("alignment", "shapes-alignment of the decoded samples (higher is better)")):
        out += [f"**{title}**, mean ± std over {seeds} seeds × {results['outputs']} samples:", "", header, rule]
        for sampler, by_nfe in summary["samplers"].items():
            cells = [by_nfe.get(str(n)) for n in nfes]
            out.append(f"| {sampler} | " + " | ".join("–" if c is None else f"{c[metric][0]:.3f} ± {c[metric][1]:.3f}"
                                                      for c in cells) + " |")
        reference = summary[f"reference_{'error' if metric == 'rmse' else 'alignment'}"]
        label = (f"ground truth: its distance from a {results['fine_steps'] // 2}-step grid" if metric == "rmse"
                 else f"ground truth ({results['fine_steps']}-step grid)")
        out.append(f"| {label} | " + " | ".join(f"{reference[str(n)][0]:.3f} ± {reference[str(n)][1]:.3f}"
                                                 for n in nfes) + " |")
        out.append("")
    return "\n".join(out).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--nfe", nargs="+", type=int, default=list(NFES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fine-steps", type=int, default=200,
                        help="evenly spaced points of the ground-truth grid over the training timesteps")
    parser.add_argument("--outputs", type=int, default=24, help="held-out prompts sampled per seed (default: all 24)")
    parser.add_argument("--calibration", type=int, default=CALIBRATION_SIZE,
                        help="calibration prompts DC-Solver's ratios are fitted on")
    results_arguments(parser, RESULTS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.tables:
        print(tables(stored_results(out)))
        return
    import difforge

    backbone = difforge.load("shapes-sd-tiny").eval()
    ratios, fit_seconds = ((fit_ratios(backbone, args.nfe, args.fine_steps, args.calibration))
                           if "dc-solver" in args.samplers else ({}, 0.0))
    print(json.dumps({"dc_ratios": ratios, "fit_seconds": round(fit_seconds, 1)}), flush=True)
    rows = [row for seed in args.seeds for row in measure_seed(backbone, seed, args.samplers, args.nfe, ratios,
                                                               args.fine_steps, args.outputs)]
    results = {"outputs": len(prompts(HELDOUT_PROMPTS, args.outputs)), "guidance": GUIDANCE,
               "fine_steps": args.fine_steps,
               "calibration": {"prompts": args.calibration, "seed": CALIBRATION_SEED, "seconds": round(fit_seconds, 1)},
               "dc_ratios": ratios, "rows": rows, "summary": summarise(rows)}
    write_results(results, out, model="shapes-sd-tiny")
    print(tables(results))


if __name__ == "__main__":
    main()
