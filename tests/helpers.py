"""Helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_distribution(site: Path, name: str, module_source: str, requires: list[str] | None = None, version: str = "0.1.0") -> Path:
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


def run_cli(*args: str, env: dict[str, str] | None = None, pythonpath: list[Path] | None = None, timeout: int = 300):
    """Run the ``difforge`` CLI in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), full_env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "difforge.cli", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout,
    )
