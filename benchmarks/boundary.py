"""Optimal boundary conditions (difforge-solvers' ``obc``) against random initial noise, shapes world.

A row of table 3 of the steering issue. shapes-sd-tiny, DDIM, guidance 4. Per seed and step
count, the boundary condition is searched on reference prompts (the first 10 training prompts of
the alignment benchmark; 32 candidate noises of that seed, scored by shapes-alignment, the
paper's Monte-Carlo exploration) and then every held-out prompt (the alignment benchmark's 24,
never searched on) is sampled once from it and once from random noise of the same seed. Reported:
shapes-alignment on the held-out prompts (mean over prompts, then mean ± std over seeds) and its
spread over prompts (the instability the paper sets out to remove).

    python benchmarks/boundary.py            # 3 seeds, 4 and 10 steps (~5 min on 2 CPU cores)
    python benchmarks/boundary.py --tables   # print the table of the results file
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

RESULTS = HERE / "results" / "boundary.json"
PROMPTS = HERE.parent / "examples" / "configs" / "alignment"
GUIDANCE = 4.0


def prompts(name: str, limit: int | None = None) -> list[str]:
    """The alignment benchmark's prompts of ``prompts_<name>.txt``."""
    lines = [line.strip() for line in (PROMPTS / f"prompts_{name}.txt").read_text().splitlines() if line.strip()]
    return lines[:limit]


def rows_for(backbone, reward, seed: int, steps: int, reference: list[str], heldout: list[str],
             candidates: int) -> list[dict]:
    """The searched boundary and random noise of ``seed`` on the held-out prompts, at ``steps``."""
    import torch

    from difforge_solvers.boundary import search_boundary

    start = time.perf_counter()
    search = search_boundary(backbone, reference, reward, candidates=candidates, num_steps=steps,
                             guidance_scale=GUIDANCE, generator=torch.Generator().manual_seed(seed))
    searched = round(time.perf_counter() - start, 1)
    rows = []
    for method in ("random", "obc"):
        generator = torch.Generator().manual_seed(100 + seed)
        with torch.no_grad():
            if method == "obc":
                images = backbone.sample(heldout, num_steps=steps, guidance_scale=GUIDANCE, sampler="obc",
                                         boundary=search.boundary)
            else:
                images = backbone.sample(heldout, num_steps=steps, guidance_scale=GUIDANCE, generator=generator)
        scores = reward(images, heldout).float()
        row = {"method": method, "steps": steps, "seed": seed, "alignment": scores.mean().item(),
               "spread": scores.std().item(), "per_prompt": scores.tolist()}
        if method == "obc":
            row.update(search_seconds=searched, reference_best=max(search.scores),
                       reference_mean=sum(search.scores) / len(search.scores))
        print(json.dumps({k: v for k, v in row.items() if k != "per_prompt"}), flush=True)
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds of each (steps, method)."""
    keys = sorted({(row["steps"], row["method"]) for row in rows}, key=lambda k: (k[0], k[1] != "random"))
    out = []
    for steps, method in keys:
        chosen = [row for row in rows if (row["steps"], row["method"]) == (steps, method)]
        out.append({"steps": steps, "method": method, "seeds": len(chosen),
                    "alignment": mean_std([row["alignment"] for row in chosen]),
                    "spread": mean_std([row["spread"] for row in chosen])})
    return out


def tables(results: dict) -> str:
    """The results as a Markdown table."""
    lines = [f"Held-out prompts ({results['heldout']}), shapes-alignment, {len(results['seeds'])} seeds "
             f"(boundary searched on {results['reference']} reference prompts × {results['candidates']} candidates)",
             "", "| NFE | initial noise | alignment | spread over prompts |", "|---|---|---|---|"]
    for row in results["summary"]:
        lines.append(f"| {row['steps']} | {row['method']} | {row['alignment'][0]:.3f} ± {row['alignment'][1]:.3f} "
                     f"| {row['spread'][0]:.3f} ± {row['spread'][1]:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", nargs="+", type=int, default=[4, 10], help="DDIM step counts")
    parser.add_argument("--candidates", type=int, default=32, help="candidate noises of the search")
    parser.add_argument("--reference", type=int, default=10, help="reference (training) prompts of the search")
    parser.add_argument("--heldout", type=int, default=24, help="held-out prompts evaluated")
    results_arguments(parser, RESULTS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.tables:
        print(tables(stored_results(out)))
        return
    import torch

    import difforge

    torch.set_num_threads(2)
    backbone = difforge.load("shapes-sd-tiny").eval()
    reward = difforge.get_registry("rewards").get("shapes-alignment")
    reference, heldout = prompts("train", args.reference), prompts("heldout", args.heldout)
    started = time.perf_counter()
    rows = [row for seed in args.seeds for steps in args.steps
            for row in rows_for(backbone, reward, seed, steps, reference, heldout, args.candidates)]
    results = {"guidance": GUIDANCE, "seeds": args.seeds, "candidates": args.candidates,
               "reference": len(reference), "heldout": len(heldout), "reference_prompts": reference,
               "wall_seconds": round(time.perf_counter() - started), "rows": rows, "summary": summarise(rows)}
    write_results(results, out, model="shapes-sd-tiny")
    print(tables(results))


if __name__ == "__main__":
    main()
