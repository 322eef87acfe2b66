"""Helpers shared by the tests."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def make_distribution(site: Path, name: str, module_source: str, requires: list[str] | None = None,
                      version: str = "0.1.0") -> Path:
    """Write a minimal installed distribution (dist-info + module) with a ``difforge`` entry point."""
    site.mkdir(parents=True, exist_ok=True)
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(module_source)
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires or []]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "entry_points.txt").write_text(f"[difforge]\n{module} = {module}\n")
    return site


@functools.cache
def benchmark_module(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module, once per session (its ``RUNS``, printers and
    constants; a test that patches it uses ``monkeypatch``, which undoes the change)."""
    import importlib.util

    if str(ROOT / "benchmarks") not in sys.path:  # benchmarks import their shared worker module
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str, env: dict[str, str] | None = None, pythonpath: list[Path] | None = None, timeout: int = 300):
    """Run the ``difforge`` CLI in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), full_env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "difforge.cli", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout,
    )


def cli_error(capsys, *args: str) -> str:
    """Run the ``difforge`` CLI in this process (no interpreter start-up) on arguments that must fail;
    asserts exit code 1 and a one-line error, and returns that line."""
    from difforge.cli import main

    capsys.readouterr()
    assert main(list(args)) == 1
    err = capsys.readouterr().err
    assert err.strip() and err.strip().count("\n") == 0, err
    return err


def pixel_unet_config(images: Path, out: Path, **sections) -> dict:
    """A fast full-fine-tuning config: a 16x16 pixel-space UNet2DModel on the toy images."""
    config = {
        "model": {"build": "unet2d", "options": {"denoiser": {
            "sample_size": 16, "in_channels": 3, "out_channels": 3, "block_out_channels": [16, 32],
            "layers_per_block": 1, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8}}},
        "data": {"dataset": "image-folder", "options": {"path": str(images), "resolution": 16}, "batch_size": 8},
        "train": {"steps": 40, "lr": 2e-3, "seed": 0},
        "output": {"dir": str(out), "tensorboard": False, "progress": False},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


def plugin_module(name: str, **hooks) -> ModuleType:
    """A plugin module implementing ``hooks`` (``hook_name=function``), for ``register_plugin``."""
    from difforge import hookimpl

    module = ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def assert_small_safetensors_model(model: Path, limit_mib: int = 25) -> None:
    """An embedded model holds no pickle-format weights and stays under ``limit_mib`` MiB."""
    files = [p for p in model.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pkl", ".ckpt")]
    assert sum(p.stat().st_size for p in files) <= limit_mib * 2**20


def brightness_reward():
    """A reward scoring each image by its mean pixel value (a cheap, differentiable stand-in)."""
    from difforge.plugin_api import ImageReward

    class Brightness(ImageReward):
        """Mean pixel value."""

        name = "brightness"

        def score(self, images, prompts=None):
            return images.float().mean(dim=(1, 2, 3))

    return Brightness()
