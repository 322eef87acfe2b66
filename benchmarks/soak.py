"""Soak: a long CPU run keeps its memory flat and its disk bounded by ``keep_last``.

A LoRA run on the testkit's tiny Stable Diffusion pipeline, ``--steps`` optimizer steps (5,000 by
default) with a checkpoint every ``--checkpoint-every`` steps and ``keep_last: 2``. Every
checkpoint interval the process's resident memory (RSS) and the run directory's size on disk
are recorded; the table prints them, and the JSON keeps the whole curve.

    python benchmarks/soak.py [--steps 5000] [--checkpoint-every 100] [--out benchmarks/results/soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def rss_mib() -> float:
    """This process's resident memory now, in MiB (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def disk_mib(folder: Path) -> float:
    """Bytes under ``folder``, in MiB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def slope_per_1000(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of ``(step, value)`` points, per 1,000 steps."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return 1000 * cov / var if var else 0.0


def main() -> None:
    """Run the soak, print the table, write JSON with ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    import difforge
    from difforge.checkpointing import list_checkpoints
    from difforge_testkit.components import build_tiny_sd
    from difforge_testkit.toydata import write_toy_images

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="difforge-soak-") as tmp:
        work = Path(tmp)
        pipeline = build_tiny_sd(work / "pipeline")
        images = write_toy_images(work / "images", count=32)
        out = work / "run"
        curve: list[dict] = []
        started = time.perf_counter()

        def record(trainer, step, logs):
            if step % args.checkpoint_every == 0:
                curve.append({"step": step, "rss_mib": round(rss_mib(), 1), "disk_mib": round(disk_mib(out), 2),
                              "checkpoints": len(list_checkpoints(out)),
                              "seconds": round(time.perf_counter() - started, 1)})

        result = difforge.train({
            "model": {"pretrained": str(pipeline)},
            "data": {"dataset": "image-folder", "options": {"path": str(images), "resolution": 32}, "batch_size": 4},
            "adapter": {"type": "lora", "options": {"rank": 4}},
            "train": {"steps": args.steps, "lr": 1e-4, "seed": 0},
            "output": {"dir": str(out), "tensorboard": False, "progress": False, "report": False,
                       "checkpoint_every": args.checkpoint_every, "keep_last": 2},
        }, callbacks=[record])
    second_half = [(p["step"], p["rss_mib"]) for p in curve if p["step"] > args.steps // 2]
    first = next(p for p in curve if p["step"] >= min(1000, args.steps // 5))
    summary = {
        "steps": result.steps, "checkpoint_every": args.checkpoint_every, "seconds": round(result.seconds, 1),
        "rss_first_mib": curve[0]["rss_mib"], "rss_at_step": {str(first["step"]): first["rss_mib"]},
        "rss_last_mib": curve[-1]["rss_mib"], "rss_max_mib": max(p["rss_mib"] for p in curve),
        "rss_slope_second_half_mib_per_1000_steps": round(slope_per_1000(second_half), 2) if len(second_half) > 1
        else None,
        "disk_max_mib": max(p["disk_mib"] for p in curve), "checkpoints_max": max(p["checkpoints"] for p in curve),
    }
    print("| step | RSS (MiB) | run dir (MiB) | checkpoints |\n|---|---|---|---|")
    shown = {curve[0]["step"], first["step"], curve[len(curve) // 2]["step"], curve[-1]["step"]}
    for point in curve:
        if point["step"] in shown:
            print(f"| {point['step']} | {point['rss_mib']:.0f} | {point['disk_mib']:.2f} | {point['checkpoints']} |")
    print(f"\nRSS slope over the second half: {summary['rss_slope_second_half_mib_per_1000_steps']} MiB per 1,000 "
          f"steps; disk at most {summary['disk_max_mib']:.2f} MiB with at most {summary['checkpoints_max']} "
          f"checkpoints; {summary['seconds']:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                              "torch_threads": 2, **summary, "curve": curve}, indent=2) + "\n")


if __name__ == "__main__":
    main()
