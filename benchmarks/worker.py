"""Benchmarks run each measurement in a fresh process (so peak memory and RNG state are its
own): the parent calls :func:`run_worker`, the child prints its result with :func:`emit`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PREFIX = "RESULT "
#: first training losses a benchmark stores per run, so the suite can re-train that far and check that the
#: stored runs are the current code's (tests/test_zoo_quickstart.py, tests/test_adapter_training.py)
LOSS_HEAD = 10


def emit(result: dict) -> None:
    """Print a worker's result where :func:`run_worker` finds it."""
    print(PREFIX + json.dumps(result), flush=True)


def run_worker(script: str | Path, args: list[str], label: str, cwd: str | Path | None = None) -> dict:
    """Run ``script --worker ...`` in a new Python process and return the dict it emitted;
    a failed worker stops the benchmark with its label and the end of its stderr."""
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=cwd)
    line = next((out for out in proc.stdout.splitlines() if out.startswith(PREFIX)), None)
    if line is None:
        raise SystemExit(f"{label}: worker failed\n{proc.stderr[-3000:]}")
    return json.loads(line[len(PREFIX):])


def model_fingerprint(name: str = "shapes-sd-tiny") -> dict:
    """Which weights of a zoo model a result was measured on: its name and the first 12 hex
    digits of the SHA-256 of its UNet's safetensors (the zoo model changes with the project)."""
    import hashlib

    import difforge_zoo

    weights = difforge_zoo.load(name) / "unet" / "diffusion_pytorch_model.safetensors"
    return {"name": name, "unet_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:12]}


def write_results(results: dict, out: str | Path, model: str | None = None) -> Path:
    """Write a benchmark's results as JSON to ``out`` (creating its folder; atomically, so an
    interrupted benchmark leaves the last complete file), stamped with the :func:`environment`
    and, with ``model``, the fingerprint of the zoo model they were measured on."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    stamp = {"environment": environment()} | ({"model": model_fingerprint(model)} if model else {})
    partial.write_text(json.dumps(stamp | results, indent=2))
    partial.replace(out)
    return out


def mean_std(values: list[float]) -> list[float]:
    """``[mean, population std]`` of ``values`` (std 0 for a single value)."""
    import statistics

    return [statistics.mean(values), statistics.pstdev(values) if len(values) > 1 else 0.0]


def results_arguments(parser, default: str | Path) -> None:
    """A benchmark's ``--out`` (its results file, ``default`` unless given) and ``--tables``
    (print the tables of that file, measure nothing)."""
    parser.add_argument("--out", default=str(default), help="the results file (default: the stored one)")
    parser.add_argument("--tables", action="store_true", help="print the tables of --out and exit")


def stored_results(out: str | Path) -> dict:
    """The results file a benchmark's ``--tables`` prints from; one line naming it if it is missing."""
    out = Path(out)
    if not out.is_file():
        raise SystemExit(f"--tables: {out} does not exist; run the benchmark first or pass --out")
    return json.loads(out.read_text())


def environment() -> dict:
    """Where results were measured, for when a re-measured spot drifts in its last digits: the CPU
    model, torch's thread count and the versions of the libraries that set the numerics (a stored
    FK row once moved by 3 JPEG bytes between machines with the same code)."""
    import importlib.metadata
    import platform

    import torch

    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
              if line.startswith("model name")]
    versions = {}
    for name in ("torch", "diffusers", "numpy", "pillow"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"cpu": models[0] if models else platform.processor(), "threads": torch.get_num_threads(),
            "python": platform.python_version(), **versions}
