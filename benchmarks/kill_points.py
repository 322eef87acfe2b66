"""Kill a training run at every moment a save can be interrupted, then resume it.

A LoRA run on a 16×16 pixel UNet (6 steps, a checkpoint every 2, ``keep_last: 2``, so it saves,
prunes and exports the adapter, summary and report) is first run once uninterrupted with
``DIFFORGE_CRASH_LOG`` to list its crash points (:func:`difforge.checkpointing.crash_point`:
before and after every atomic rename, between the renames of a checkpoint, before and during
each prune). Then, for each chosen point ``k``, a fresh run is started with
``DIFFORGE_CRASH_AT=k`` (the process SIGKILLs itself there), and ``difforge train --resume
auto`` is run in the same directory. It passes when the kill happened, the resume exits 0, and
the resumed adapter equals the uninterrupted run's tensor for tensor.

    python benchmarks/kill_points.py [--points all | N | k1,k2,...] [--out benchmarks/results/kill_points.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

STEPS = 6


def write_inputs(work: Path) -> Path:
    """The toy images (16, captioned) the runs train on."""
    from difforge_testkit.toydata import write_toy_images

    return write_toy_images(work / "images", count=16)


def run_config(images: Path, out: Path) -> dict:
    """The run every kill point interrupts."""
    return {
        "model": {"build": "unet2d", "options": {"denoiser": {
            "sample_size": 16, "in_channels": 3, "out_channels": 3, "block_out_channels": [16, 32],
            "layers_per_block": 1, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8}}},
        "data": {"dataset": "image-folder", "options": {"path": str(images), "resolution": 16}, "batch_size": 8},
        "adapter": {"type": "lora", "options": {"rank": 4}},
        "train": {"steps": STEPS, "lr": 1e-3, "seed": 0},
        "output": {"dir": str(out), "tensorboard": False, "progress": False, "checkpoint_every": 2, "keep_last": 2},
    }


def train(config_file: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``difforge train CONFIG [EXTRA]`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "difforge.cli", "train", str(config_file), *extra],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                          timeout=600)


def adapter_tensors(run_dir: Path) -> dict:
    """The exported adapter's tensors."""
    from safetensors.torch import load_file

    return load_file(str(next((run_dir / "adapter").glob("*.safetensors"))))


def prepare(work: Path) -> tuple[Path, list[str], dict]:
    """Images, the uninterrupted reference run and its list of crash point labels."""
    images = write_inputs(work)
    config_file = work / "reference.yaml"
    config_file.write_text(yaml.safe_dump(run_config(images, work / "reference")))
    log = work / "crash_points.log"
    done = train(config_file, env={"DIFFORGE_CRASH_LOG": str(log)})
    if done.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed:\n{done.stderr[-2000:]}")
    labels = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    return images, labels, adapter_tensors(work / "reference")


def kill_and_resume(work: Path, images: Path, point: int, reference: dict) -> dict:
    """Kill a fresh run at crash point ``point``, resume it, and compare with ``reference``."""
    import torch

    out = work / f"killed-{point}"
    config_file = work / f"killed-{point}.yaml"
    config_file.write_text(yaml.safe_dump(run_config(images, out)))
    killed = train(config_file, env={"DIFFORGE_CRASH_AT": str(point)})
    resumed = train(config_file, "--resume", "auto")
    row = {"point": point, "killed": killed.returncode == -signal.SIGKILL, "resume_exit": resumed.returncode}
    if resumed.returncode == 0:
        tensors = adapter_tensors(out)
        row["equal"] = tensors.keys() == reference.keys() and all(torch.equal(tensors[k], reference[k])
                                                                  for k in reference)
    else:
        row["equal"] = False
        row["error"] = resumed.stderr.strip().splitlines()[-1] if resumed.stderr.strip() else ""
    row["ok"] = row["killed"] and row["equal"]
    shutil.rmtree(out, ignore_errors=True)
    return row


def choose(points: str, total: int) -> list[int]:
    """``all``, a count spread evenly over the run, or a comma-separated list of points."""
    if points == "all":
        return list(range(1, total + 1))
    if "," in points or not points.isdigit():
        return [int(p) for p in points.split(",")]
    count = min(int(points), total)
    return sorted({round(1 + i * (total - 1) / max(count - 1, 1)) for i in range(count)})


def main() -> int:
    """Run the kill points, print the table, write JSON with ``--out``; exit 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default="all", help="'all', a count spread over the run, or 'k1,k2,...'")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="difforge-kill-") as tmp:
        work = Path(tmp)
        images, labels, reference = prepare(work)
        rows = []
        for point in choose(args.points, len(labels)):
            row = kill_and_resume(work, images, point, reference)
            row["label"] = labels[point - 1]
            rows.append(row)
            print(f"| {point} | {row['label']} | {'killed' if row['killed'] else 'NOT KILLED'} | "
                  f"{'resumed, equal' if row['ok'] else 'FAILED ' + row.get('error', '')} |", flush=True)
    failed = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} kill points resumed to the uninterrupted run's adapter "
          f"({len(labels)} crash points in the run; {time.perf_counter() - started:.0f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "machine": platform.processor() or platform.machine(), "crash_points_in_run": len(labels),
            "tested": len(rows), "passed": len(rows) - len(failed), "seconds": round(time.perf_counter() - started),
            "rows": rows}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
