"""The benchmark script still runs (numbers are reported by the script, never asserted here)."""

import json
import subprocess
import sys

import pytest
from helpers import ROOT, benchmark_module


def test_train_step_benchmark_smoke():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--rounds", "1", "--steps", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| ratio difforge / hand-written |" in proc.stdout


def test_adapter_benchmark_smoke(tmp_path):
    out = tmp_path / "adapters.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "adapters.py"), "--steps", "2", "--samples", "2",
                           "--class-images", "2", "--types", "difffit", "--type-seeds", "0", "--skip", "interference",
                           "--skip", "prior",
                           "--skip", "ip-adapter", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| `difffit` |" in proc.stdout and "| base model |" in proc.stdout
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
    assert all(len(row["loss_head"]) == row["steps"] for row in results["rows"])  # the suite re-trains these
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

    linear_probe_accuracy = benchmark_module("adapters").linear_probe_accuracy

    g = torch.Generator().manual_seed(0)
    labels = [("circle", "square", "triangle")[i % 3] for i in range(600)]
    centres = torch.randn(3, 16, generator=g) * 3
    encoded = centres[torch.arange(600) % 3] + torch.randn(600, 16, generator=g)
    noise = torch.randn(600, 16, generator=g)
    assert linear_probe_accuracy(encoded[:400], labels[:400], encoded[400:], labels[400:]) > 0.95
    assert linear_probe_accuracy(noise[:400], labels[:400], noise[400:], labels[400:]) < 0.5


def test_best_of_n_pool_starts_from_the_base_sample_and_never_gets_worse(monkeypatch):
    """Candidate 0 of every pool seed is the sample the benchmark measures the base model on, so
    best-of-1 is the base's score; picking by a reward can only raise that reward as N grows."""
    import statistics

    import difforge

    alignment = benchmark_module("alignment")
    like, steps, rewards, _ = alignment.POOLS["ddim-10"]
    monkeypatch.setitem(alignment.POOLS, "ddim-10", (like, 2, rewards, 3))
    pool = alignment.pool_worker("ddim-10", seed=1, samples=1)
    base = alignment.measure(difforge.load("shapes-sd-tiny"), rewards, 2, 1, "ddpo-alignment")
    for reward in rewards:
        assert abs(pool["best_of"][reward][reward][0] - statistics.mean(base[reward])) < 1e-6
        curve = pool["best_of"][reward][reward]
        assert all(later >= earlier - 1e-9 for earlier, later in zip(curve, curve[1:], strict=False))
    assert len(pool["best_of"]["shapes-alignment"]["colourfulness"]) == 3


def test_baselines_pair_each_run_with_its_own_by_seed():
    """Supervised baselines pair seed with seed; an on-policy run's best-of-N has N = its
    generated samples per evaluation sample, picked by the reward it trained on."""
    alignment = benchmark_module("alignment")

    def row(run, seed, after, generated=None):
        return {"run": run, "seed": seed, "after": after, "generated_samples": generated}

    rows = [row("dpo", 0, {"shapes-alignment": 0.90}), row("dpo", 1, {"shapes-alignment": 0.88}),
            row("sft-dpo", 0, {"shapes-alignment": 0.85}), row("sft-dpo", 1, {"shapes-alignment": 0.89}),
            row("sft-dpo", 2, {"shapes-alignment": 0.99}),
            row("ddpo-compressibility", 0, {"jpeg-compressibility": -1.1, "shapes-alignment": 0.2}, 1280)]
    curve = [-1.3 + 0.01 * n for n in range(27)]
    pools = [{"pool": "ddim-10", "seed": 0, "candidates": 27,
              "best_of": {"jpeg-compressibility": {"jpeg-compressibility": curve, "shapes-alignment": [0.8] * 27}}}]
    out = alignment.compare_baselines(rows, pools, samples=4)
    dpo = out["dpo"]
    assert dpo["baseline"] == "sft-dpo" and dpo["seeds"] == [0, 1] and dpo["eval_prompts_in_training"] == 0
    assert abs(dpo["rewards"]["shapes-alignment"]["difference"][0] - 0.02) < 1e-9
    ddpo = out["ddpo-compressibility"]
    assert ddpo["n"] == 13 and ddpo["baseline"].startswith("best-of-13")  # 1280 samples / (24 prompts x 4)
    assert abs(ddpo["rewards"]["jpeg-compressibility"]["baseline"][0] - curve[12]) < 1e-9
    assert abs(ddpo["rewards"]["shapes-alignment"]["difference"][0] - (0.2 - 0.8)) < 1e-9
    assert "sft-dpo" not in out  # a baseline has no baseline


def test_chosen_images_make_an_image_folder_of_the_preferred_samples(tmp_path):
    from PIL import Image

    from difforge.training.data import ImageFolderDataset
    from difforge_align import chosen_images

    pairs = tmp_path / "pairs"
    (pairs / "images").mkdir(parents=True)
    for i, colour in enumerate(["red", "blue", "lime", "white"]):
        Image.new("RGB", (8, 8), colour).save(pairs / "images" / f"{i}.png")
    rows = [{"caption": "a red thing", "chosen": "images/0.png", "rejected": "images/1.png"},
            {"caption": "a green thing", "chosen": "images/2.png", "rejected": "images/3.png"}]
    (pairs / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = ImageFolderDataset(str(chosen_images(pairs, tmp_path / "chosen")), resolution=8)
    assert [dataset[i]["caption"] for i in range(len(dataset))] == ["a red thing", "a green thing"]
    assert dataset[0]["pixel_values"][0].mean() > 0.9 and dataset[1]["pixel_values"][1].mean() > 0.9
    (pairs / "pairs.jsonl").write_text(json.dumps(rows[0] | {"chosen": "images/missing.png"}) + "\n")
    from difforge.errors import DataError

    with pytest.raises(DataError, match="pair 1: chosen 'images/missing.png'"):
        chosen_images(pairs, tmp_path / "other")


def test_steering_benchmark_smoke_and_merge(tmp_path):
    out = tmp_path / "steering.json"

    def bench(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "steering.py"), "--seeds", "0",
                               "--outputs", "2", "--particles", "2", "--out", str(out), *args],
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    bench("--settings", "shapes-alignment", "--methods", "base", "fk")
    proc = bench("--settings", "shapes-compressibility", "--methods", "svdd", "--merge")
    assert "| fk | 2 | 50 |" in proc.stdout and "| svdd | 2 | 49 |" in proc.stdout  # no best-of-n: "–"
    results = json.loads(out.read_text())
    assert set(results["summary"]) == {"shapes-alignment", "shapes-compressibility"}
    assert results["model"]["unet_sha256"] and results["fine_tuned"]["dpo"][0] > 0


def test_samplers_benchmark_smoke(tmp_path):
    out = tmp_path / "samplers.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "samplers.py"), "--seeds", "0", "--outputs", "2",
                           "--calibration", "2", "--nfe", "4", "--fine-steps", "10", "--samplers", "ddim",
                           "dc-solver", "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["summary"]["samplers"]) == {"ddim", "dc-solver"} and len(results["dc_ratios"]["4"]) == 4
    assert "| dc-solver | " in proc.stdout and "| ground truth (10-step grid) |" in proc.stdout
    assert "| ground truth: its distance from a 5-step grid |" in proc.stdout
    assert results["model"]["unet_sha256"] and all(row["rmse"] > 0 for row in results["rows"])


def test_canvas_benchmark_smoke(tmp_path):
    out = tmp_path / "canvas.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "canvas.py"), "--seeds", "0", "--prompts", "1",
                           "--layouts", "1", "--per-layout", "1", "--highres-prompts", "1", "--cow-tasks", "1",
                           "--per-task", "1", "--steps", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results["summary"]) == {"panorama", "composite", "highres", "cow"} and results["steps"] == 2
    assert "| stitchdiffusion | 28 |" in proc.stdout and "| composite | 4 |" in proc.stdout
    assert "| diffusehigh | 4 |" in proc.stdout and "| naive+attention | 2 |" in proc.stdout
    assert "| cow | 4 |" in proc.stdout and "| paste-and-replace | 4 |" in proc.stdout  # at COW's NFE
    assert results["environment"]["threads"] >= 1 and results["environment"]["torch"]
    timed = [row for row in results["rows"] if row["method"] not in ("native", "upsample")]  # DiffuseHigh's stage 1
    assert results["model"]["unet_sha256"] and all(row["seconds"] > 0 for row in timed)


def test_ppap_benchmark_smoke(tmp_path):
    out = tmp_path / "ppap.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ppap.py"), "--seeds", "0", "--scales", "2",
                           "--per-colour", "1", "--classifier-scenes", "64", "--classifier-steps", "2",
                           "--transfer-samples", "8",
                           "--check-samples", "8", "--expert-steps", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert [(row["method"], row["scale"]) for row in results["summary"]] == [
        ("base", 0.0), ("clean", 2.0), ("single", 2.0), ("ppap", 2.0)]
    assert len(results["rows"][0]["per_target"]) == 6 and results["agreement"]["ranges"][0] == [0, 200]
    assert "| ppap | 2 |" in proc.stdout and results["model"]["unet_sha256"]


def test_boundary_benchmark_smoke(tmp_path):
    out = tmp_path / "boundary.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "boundary.py"), "--seeds", "0", "--steps", "2",
                           "--candidates", "2", "--reference", "2", "--heldout", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert [(row["steps"], row["method"]) for row in results["summary"]] == [(2, "random"), (2, "obc")]
    assert len(results["rows"][1]["per_prompt"]) == 2 and "| 2 | obc |" in proc.stdout


def test_restoration_benchmark_smoke(tmp_path):
    out = tmp_path / "restoration.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "restoration.py"), "--seeds", "0", "--scenes", "2",
                           "--reference-steps", "3", "--reference", "2", "--candidates", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["summary"][0]["method"] == "bicubic" and len(results["rows"][1]["per_scene_psnr"]) == 2
    assert {row["method"] for row in results["summary"] if "ode_rmse" in row} == {"euler-ode", "mrs-noise-ode",
                                                                                 "mrs-data-ode"}
    assert "| mrs-data-ode | 10 |" in proc.stdout and results["model"]["name"] == "shapes-sr-mr"


def test_sc_tuner_control_benchmark_smoke(tmp_path):
    out = tmp_path / "sc.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sc_tuner_control.py"), "--steps", "2",
                           "--masks", "1", "--seeds", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["masks"] == 2 and len(results["runs"][0]["loss_head"]) == 2
    assert "| CSC-Tuner, mask given" in proc.stdout and results["model"]["unet_sha256"]


@pytest.mark.parametrize("benchmark", ["alignment", "steering", "samplers", "canvas", "ppap", "boundary",
                                       "sc_tuner_control", "restoration"])
def test_tables_of_a_missing_results_file_fail_in_one_line(tmp_path, benchmark):
    missing = tmp_path / "missing.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{benchmark}.py"), "--tables", "--out",
                           str(missing)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode != 0
    assert proc.stderr.strip() == f"--tables: {missing} does not exist; run the benchmark first or pass --out"
