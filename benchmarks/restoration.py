"""MR Sampler against the samplers mean-reverting diffusion otherwise uses, on 4x super-resolution.

A row of the steering issue's sampler table (MRS, Li et al. 2025). The zoo's shapes-sr-mr
(IR-SDE-style MR diffusion, noise prediction) restores scenes of the shapes world from their
4x-downsampled images (:mod:`difforge_zoo.restoration`); the evaluation scenes are drawn from a
seed no training scene came from. Each seed draws the starting noise ``mu + sigma_1 eps`` (and
the SDE samplers' noise); every sampler restores the same scenes from the same start.

| method | what it is |
|---|---|
| bicubic | the degraded image itself (the classic non-learned reconstruction, 0 NFE) |
| euler-maruyama | Euler-Maruyama on the reverse MR SDE, IR-SDE's sampler (the baseline) |
| euler-ode | Euler on the probability-flow ODE |
| mrs-noise-ode | MR Sampler, noise prediction, ODE, order 2 |
| mrs-data-ode | MR Sampler, data prediction, ODE, order 2 (the paper's recommended solver) |
| mrs-data-sde | MR Sampler, data prediction, SDE, order 2 |
| obc | mrs-data-ode from an optimal boundary condition (Ma et al. 2024): one start noise for every scene |

The boundary condition is searched per seed and NFE on ``--reference`` scenes of another scene
seed (neither training nor evaluation scenes): ``--candidates`` noises of that seed, each scored
by the mean PSNR of its restorations (the paper scores by LPIPS, which needs downloaded weights).

Measured per scene: PSNR against the drawn scene and whether the analytic scorer recovers the
scene exactly (every object's shape, colour and position); for the ODE samplers also
``ode_rmse``, the pixel RMSE from the ODE's solution (MR Sampler, data, order 2, on
``--reference-steps`` steps) from the same start: how well each solves the ODE.

    python benchmarks/restoration.py            # 3 seeds, 128 scenes (~5 min on 2 CPU cores)
    python benchmarks/restoration.py --tables   # print the tables of the results file
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker import mean_std, results_arguments, stored_results, write_results  # noqa: E402

RESULTS = HERE / "results" / "restoration.json"
MODEL = "shapes-sr-mr"
#: NFEs of each method
METHOD_NFES = {"euler-maruyama": (5, 10, 20, 50, 100), "euler-ode": (5, 10, 20, 50, 100),
               "mrs-noise-ode": (5, 10, 20), "mrs-data-ode": (5, 10, 20), "mrs-data-sde": (5, 10, 20)}
ODE_METHODS = ("euler-ode", "mrs-noise-ode", "mrs-data-ode")
OBC_NFES = (5, 10)
#: the scene seed of the reference scenes the boundary condition is searched on
REFERENCE_SEED = 8


def sampler(method: str):
    """The sampling function of ``method``: ``(denoise, x, mean, schedule, steps, generator) -> x0``."""
    from difforge_solvers.mrs import sample_mr_euler, sample_mr_euler_maruyama, sample_mrs

    if method == "euler-maruyama":
        return lambda d, x, m, s, n, g: sample_mr_euler_maruyama(d, x, m, s, n, generator=g)
    if method == "euler-ode":
        return lambda d, x, m, s, n, g: sample_mr_euler(d, x, m, s, n)
    _, prediction, kind = method.split("-")
    return lambda d, x, m, s, n, g: sample_mrs(d, x, m, s, n, prediction=prediction, stochastic=kind == "sde",
                                                generator=g)


def scored(images, clean, scenes) -> dict:
    """Mean PSNR and scene recovery of restored ``images``, with the per-scene PSNR."""
    from difforge_zoo.restoration import restoration_scores

    scores = restoration_scores(images, clean, scenes)
    return {"psnr": sum(scores["psnr"]) / len(scenes), "recovered": sum(scores["recovered"]) / len(scenes),
            "per_scene_psnr": [round(v, 4) for v in scores["psnr"]]}


def restore(network, schedule, mean, method: str, nfe: int, seed: int, boundary=None):
    """``method``'s restoration of the degraded batch ``mean`` at ``nfe`` from seed ``seed``'s start
    (or from the ``boundary`` noise shared by every scene)."""
    import torch

    from difforge_solvers.mean_reverting import MeanRevertingDenoiser

    noise = None if boundary is None else boundary.expand_as(mean)
    start = schedule.terminal(mean, generator=torch.Generator().manual_seed(seed), noise=noise)
    with torch.no_grad():
        return sampler(method)(MeanRevertingDenoiser(network, schedule, mean), start, mean, schedule, nfe,
                               torch.Generator().manual_seed(1000 + seed))


def search(network, schedule, seed: int, nfe: int, reference: int, candidates: int):
    """The boundary condition of ``seed`` at ``nfe``, searched on ``reference`` scenes."""
    import torch

    from difforge_solvers.mrs import search_mr_boundary
    from difforge_zoo.restoration import evaluation_task, psnr

    _, clean, degraded = evaluation_task(reference, seed=REFERENCE_SEED)
    return search_mr_boundary(network, schedule, degraded, lambda images: psnr(images, clean).mean().item(),
                              steps=nfe, candidates=candidates, generator=torch.Generator().manual_seed(seed))


def rows_for(network, schedule, seed: int, scenes, clean, mean, reference_steps: int, reference: int,
             candidates: int) -> list[dict]:
    """Every method's rows of ``seed``."""
    reference_solution = restore(network, schedule, mean, "mrs-data-ode", reference_steps, seed)
    rows = [{"method": "bicubic", "nfe": 0, "seed": seed, **scored(mean, clean, scenes)}]
    for method, nfes in METHOD_NFES.items():
        for nfe in nfes:
            started = time.perf_counter()
            images = restore(network, schedule, mean, method, nfe, seed)
            row = {"method": method, "nfe": nfe, "seed": seed, **scored(images, clean, scenes),
                   "seconds": round(time.perf_counter() - started, 2)}
            if method in ODE_METHODS:
                row["ode_rmse"] = (images - reference_solution).pow(2).mean().sqrt().item()
            print(json.dumps({k: v for k, v in row.items() if k != "per_scene_psnr"}), flush=True)
            rows.append(row)
    for nfe in OBC_NFES:
        started = time.perf_counter()
        found = search(network, schedule, seed, nfe, reference, candidates)
        searched = round(time.perf_counter() - started, 1)
        images = restore(network, schedule, mean, "mrs-data-ode", nfe, seed, boundary=found.boundary)
        row = {"method": "obc", "nfe": nfe, "seed": seed, **scored(images, clean, scenes),
               "search_seconds": searched,
               "reference_best": max(found.scores), "reference_mean": sum(found.scores) / len(found.scores)}
        print(json.dumps({k: v for k, v in row.items() if k != "per_scene_psnr"}), flush=True)
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds of each (method, NFE)."""
    keys = list(dict.fromkeys((row["method"], row["nfe"]) for row in rows))
    out = []
    for method, nfe in keys:
        chosen = [row for row in rows if (row["method"], row["nfe"]) == (method, nfe)]
        entry = {"method": method, "nfe": nfe, "seeds": len(chosen)}
        for metric in ("psnr", "recovered", "ode_rmse", "reference_best", "reference_mean"):
            if metric in chosen[0]:
                entry[metric] = mean_std([row[metric] for row in chosen])
        out.append(entry)
    return out


def tables(results: dict) -> str:
    """The results as a Markdown table."""
    lines = [f"4x super-resolution, {results['scenes']} held-out scenes, {len(results['seeds'])} seeds "
             f"({results['model']['name']}); ODE error against MR Sampler (data, order 2) at "
             f"{results['reference_steps']} steps", "",
             "| method | NFE | PSNR (dB) | scenes recovered | ODE error (RMSE) |", "|---|---|---|---|---|"]
    for row in results["summary"]:
        ode = f"{row['ode_rmse'][0]:.4f} ± {row['ode_rmse'][1]:.4f}" if "ode_rmse" in row else "–"
        lines.append(f"| {row['method']} | {row['nfe']} | {row['psnr'][0]:.2f} ± {row['psnr'][1]:.2f} "
                     f"| {row['recovered'][0]:.3f} ± {row['recovered'][1]:.3f} | {ode} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--scenes", type=int, default=128, help="held-out scenes restored per seed")
    parser.add_argument("--reference-steps", type=int, default=200, help="steps of the ODE's reference solution")
    parser.add_argument("--reference", type=int, default=16, help="reference scenes the boundary is searched on")
    parser.add_argument("--candidates", type=int, default=32, help="candidate noises of the boundary search")
    results_arguments(parser, RESULTS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.tables:
        print(tables(stored_results(out)))
        return
    import torch

    import difforge_zoo
    from difforge_solvers.mean_reverting import load_mean_reverting
    from difforge_zoo.restoration import evaluation_task

    torch.set_num_threads(2)
    network, schedule = load_mean_reverting(difforge_zoo.load(MODEL))
    scenes, clean, mean = evaluation_task(args.scenes)
    started = time.perf_counter()
    rows = [row for seed in args.seeds
            for row in rows_for(network, schedule, seed, scenes, clean, mean, args.reference_steps, args.reference,
                                args.candidates)]
    results = {"scenes": args.scenes, "reference": args.reference, "candidates": args.candidates, "seeds": args.seeds,
               "reference_steps": args.reference_steps, "wall_seconds": round(time.perf_counter() - started),
               "rows": rows, "summary": summarise(rows)}
    path = write_results(results, out, model=MODEL)
    print(tables(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
