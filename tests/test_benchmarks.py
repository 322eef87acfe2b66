"""The benchmark script still runs (numbers are reported by the script, never asserted here)."""

import subprocess
import sys

from helpers import ROOT


def test_train_step_benchmark_smoke():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--rounds", "1", "--steps", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| ratio difforge / hand-written |" in proc.stdout
