"""The benchmark script still runs (numbers are reported by the script, never asserted here)."""

import json
import subprocess
import sys

from helpers import ROOT


def test_train_step_benchmark_smoke():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--rounds", "1", "--steps", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| ratio difforge / hand-written |" in proc.stdout


def test_adapter_benchmark_smoke(tmp_path):
    out = tmp_path / "adapters.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "adapters.py"), "--steps", "2", "--samples", "2",
                           "--class-images", "2", "--types", "difffit", "--skip", "interference",
                           "--skip", "ip-adapter", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| difffit |" in proc.stdout and "| base model |" in proc.stdout
    row = json.loads(out.read_text())["types"][0]
    assert row["trainable"] > 0 and row["steps"] == 2 and 0 <= row["concept_fidelity"] <= 1


def test_alignment_benchmark_smoke_and_merge(tmp_path):
    out = tmp_path / "alignment.json"

    def bench(*runs: str, merge: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "alignment.py"), "--runs", *runs,
                               "--seeds", "0", "--scale", "0.02", "--samples", "1", "--out", str(out),
                               *(["--merge"] if merge else [])],
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    bench("alignprop-colourfulness")
    proc = bench("pso-heldout", merge=True)  # keeps the first invocation's rows
    assert "| alignprop-colourfulness | colourfulness |" in proc.stdout
    assert "| pso-heldout | shapes-alignment |" in proc.stdout
    assert "### Win rate of the tuned model over the base per reward" in proc.stdout
    results = json.loads(out.read_text())
    assert results["summary"]["alignprop-colourfulness"]["steps"] == 1
    assert results["summary"]["pso-heldout"]["seeds"] == 1
    win_rate = results["summary"]["pso-heldout"]["rewards"]["shapes-alignment"]["win_rate"]
    assert 0 <= win_rate[0] <= 1 and win_rate[1] == 0  # one seed
    tables = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "alignment.py"), "--tables", "--out", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert tables.returncode == 0 and f"| pso-heldout | shapes-alignment | {win_rate[0]:.3f} ± 0.000 |" in tables.stdout
    missing = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "alignment.py"), "--tables", "--out",
                              str(tmp_path / "none.json")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert missing.returncode != 0 and "--tables:" in missing.stderr and "none.json" in missing.stderr
    assert results["model"]["unet_sha256"] and not out.with_name(out.name + ".partial").exists()
    stale = results | {"samples": 2}
    out.write_text(json.dumps(stale))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "alignment.py"), "--runs", "pso-heldout",
                           "--seeds", "0", "--samples", "1", "--out", str(out), "--merge"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode != 0 and "--merge:" in proc.stderr


def test_linear_probe_reads_an_encoded_attribute_and_not_an_absent_one():
    """The probe behind the IP-Adapter table's diagnosis: near 1 for a feature that encodes the
    label, near chance for features independent of it."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from adapters import linear_probe_accuracy

    g = torch.Generator().manual_seed(0)
    labels = [("circle", "square", "triangle")[i % 3] for i in range(600)]
    centres = torch.randn(3, 16, generator=g) * 3
    encoded = centres[torch.arange(600) % 3] + torch.randn(600, 16, generator=g)
    noise = torch.randn(600, 16, generator=g)
    assert linear_probe_accuracy(encoded[:400], labels[:400], encoded[400:], labels[400:]) > 0.95
    assert linear_probe_accuracy(noise[:400], labels[:400], noise[400:], labels[400:]) < 0.5
