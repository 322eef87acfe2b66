"""What difforge promises when things go wrong: damaged checkpoints fall back, runs never mix,
images keep their range and orientation, saves survive a SIGKILL (a cheap spot of
``benchmarks/kill_points.py``)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, pixel_unet_config
from PIL import Image
from safetensors.torch import load_file

import difforge
from difforge.checkpointing import checkpoint_problem, list_checkpoints
from difforge.cli import main
from difforge.errors import CheckpointError, ConfigError, DataError
from difforge.training.data import image_to_tensor, load_image


def model_tensors(run_dir):
    return {f"{p.relative_to(run_dir)}:{k}": v for p in sorted((run_dir / "model").rglob("*.safetensors"))
            for k, v in load_file(str(p)).items()}


def config(images, out, steps):
    return pixel_unet_config(images, out, train={"steps": steps, "lr": 2e-3, "seed": 0},
                             output={"checkpoint_every": 2, "keep_last": 3, "report": False})


@pytest.fixture(scope="module")
def runs(toy_images, tmp_path_factory):
    """An uninterrupted 8-step run (the reference) and a 6-step run with checkpoints 2, 4, 6."""
    root = tmp_path_factory.mktemp("reliability")
    reference = difforge.train(config(toy_images, root / "reference", 8))
    six = difforge.train(config(toy_images, root / "six", 6))
    return {"images": toy_images, "reference": model_tensors(reference.output_dir), "six": six.output_dir}


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-16])


def _same_size_garbage(path):
    path.write_bytes(b"x" * path.stat().st_size)


DAMAGE = {
    "truncated-weights": lambda c: _truncate(c / "trainable.safetensors"),
    "truncated-rng": lambda c: _truncate(c / "rng-0.pt"),
    "truncated-optimizer": lambda c: _truncate(c / "optimizer.pt"),
    "garbage-trainer-state": lambda c: _same_size_garbage(c / "trainer_state.json"),
    "missing-lr-scheduler": lambda c: (c / "lr_scheduler.pt").unlink(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_auto_falls_back_past_a_damaged_checkpoint_and_ends_equal(damage, runs, tmp_path, capsys):
    out = shutil.copytree(runs["six"], tmp_path / "run")
    DAMAGE[damage](out / "checkpoint-6")
    assert checkpoint_problem(out / "checkpoint-6") is not None
    assert checkpoint_problem(out / "checkpoint-4") is None
    capsys.readouterr()
    result = difforge.train(config(runs["images"], out, 8), overrides=["train.resume=auto"])
    said = capsys.readouterr().err
    assert "checkpoint-6 is damaged" in said and "trying the checkpoint before it" in said
    assert len(result.losses) == 8
    tensors = model_tensors(out)
    assert tensors.keys() == runs["reference"].keys()
    assert all(torch.equal(tensors[k], runs["reference"][k]) for k in tensors)


def test_when_every_checkpoint_is_damaged_resume_refuses_and_deletes_nothing(runs, tmp_path):
    out = shutil.copytree(runs["six"], tmp_path / "run")
    for checkpoint in list_checkpoints(out):
        _truncate(checkpoint / "trainable.safetensors")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        difforge.train(config(runs["images"], out, 8), overrides=["train.resume=auto"])
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_a_reused_output_dir_is_refused_and_overwrite_replaces_the_run(runs, tmp_path, capsys):
    out = shutil.copytree(runs["six"], tmp_path / "run")
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    with pytest.raises(ConfigError, match=f"already holds run {run_id}; resume it with --resume auto"):
        difforge.train(config(runs["images"], out, 4))
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config(runs["images"], out, 4)))
    assert main(["train", str(path), "--overwrite"]) == 0
    assert json.loads((out / "run.json").read_text())["run_id"] != run_id
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]  # no checkpoint-6 left
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 4


def test_resume_may_change_the_step_count_but_not_the_run(runs, tmp_path):
    out = shutil.copytree(runs["six"], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"train.lr: 0.002 -> 0.01"):
        difforge.train(config(runs["images"], out, 8), overrides=["train.resume=auto", "train.lr=0.01"])
    with pytest.raises(CheckpointError, match=r"another config: train.seed: 0 -> 3"):
        difforge.train(config(runs["images"], tmp_path / "elsewhere", 8),
                       overrides=[f"train.resume={out / 'checkpoint-4'}", "train.seed=3"])
    other = difforge.train(config(runs["images"], tmp_path / "other", 2), overrides=["train.seed=5"]).output_dir
    with pytest.raises(ConfigError, match=r"holds a run with another config \(train.seed: 5 -> 0\)"):
        difforge.train(config(runs["images"], other, 8), overrides=[f"train.resume={out / 'checkpoint-4'}"])
    with pytest.raises(ConfigError, match="give one of them"):
        difforge.train(config(runs["images"], out, 8), overrides=["train.resume=auto", "output.overwrite=true"])
    result = difforge.train(config(runs["images"], out, 8), overrides=["train.resume=auto", "output.keep_last=1"])
    assert result.steps == 8


def test_a_run_that_fails_on_its_first_batch_writes_nothing(toy_images, tmp_path):
    images = shutil.copytree(toy_images, tmp_path / "images")
    for png in images.glob("*.png"):
        png.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        difforge.train(pixel_unet_config(images, tmp_path / "run", output={"tensorboard": True}))
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------ images
def _png(image: Image.Image, **save) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save)
    buffer.seek(0)
    return buffer


def test_16_bit_grayscale_keeps_its_range_instead_of_saturating():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    decoded = Image.open(_png(Image.fromarray(ramp)))
    assert decoded.mode.startswith("I")
    pixels = load_image(_png(Image.fromarray(ramp)), resolution=64)
    expected = torch.from_numpy(ramp.astype(np.float32) / 65535 * 2 - 1)
    assert torch.allclose(pixels[0], expected, atol=1e-5) and torch.equal(pixels[0], pixels[2])
    assert pixels.min() == -1 and pixels.max() == 1 and 0.4 < (pixels > 0).float().mean() < 0.6


def test_float_images_are_read_as_unit_range_and_out_of_range_is_refused(tmp_path):
    ramp = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(ramp, mode="F").save(tmp_path / "ramp.tiff")
    pixels = load_image(tmp_path / "ramp.tiff")
    assert torch.allclose(pixels[0], torch.from_numpy(ramp * 2 - 1), atol=1e-6)
    Image.fromarray(ramp * 4, mode="F").save(tmp_path / "hdr.tiff")
    with pytest.raises(ValueError, match=r"float image must hold values in \[0, 1\]"):
        load_image(tmp_path / "hdr.tiff")


def test_exif_orientation_is_applied():
    stored = Image.new("RGB", (40, 20), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # red on the stored image's left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the red half is then on top
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif, quality=95)
    pixels = load_image(io.BytesIO(buffer.getvalue()))  # the displayed 20x40, centre-cropped to 20x20
    red = pixels[0]
    assert red[:4].mean() > 0.8 and red[-4:].mean() < -0.8  # red rows on top, black below
    with Image.open(io.BytesIO(buffer.getvalue())) as raw:
        assert raw.size == (40, 20)  # the file itself is stored unrotated


def _mode_image(mode: str) -> Image.Image:
    gradient = Image.linear_gradient("L").resize((24, 24))
    if mode in ("I", "I;16"):
        return Image.fromarray(np.asarray(gradient, dtype=np.uint16) * 257).convert(mode)
    if mode == "F":
        return Image.fromarray(np.asarray(gradient, dtype=np.float32) / 255, mode="F")
    return gradient.convert(mode)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr",
                                  "HSV", "LAB"])
def test_every_pil_mode_loads_as_rgb_in_range(mode, tmp_path):
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG", "F": "TIFF", "I": "TIFF", "LAB": "TIFF"}.get(mode, "PNG")
    path = tmp_path / f"image.{fmt.lower()}"
    image = _mode_image(mode)
    try:
        image.save(path, format=fmt)
    except (OSError, KeyError, ValueError):  # no file format holds it (HSV, PA): the in-memory image
        pixels = image_to_tensor(image, 16)
    else:
        pixels = load_image(path, resolution=16)
    assert pixels.shape == (3, 16, 16) and pixels.min() >= -1 and pixels.max() <= 1
    assert float(pixels.std()) > 0.05  # the gradient survived (no saturation, no black)


def test_images_over_max_pixels_are_refused_before_decoding(tmp_path):
    Image.new("L", (5000, 4000)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match="5000x4000 pixels is more than the limit of 16777216"):
        load_image(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", resolution=8, max_pixels=None).shape == (3, 8, 8)


# ------------------------------------------------------------------------------------ SIGKILL
def test_kill_points_spot_check(tmp_path):
    """Three kill points of ``benchmarks/kill_points.py`` (the whole sweep's results are stored in
    benchmarks/results/kill_points.json): each leaves a run that resumes to the same adapter."""
    results = json.loads((ROOT / "benchmarks" / "results" / "kill_points.json").read_text())
    labels = {r["label"]: r["point"] for r in results["rows"]}
    spots = ("while pruning checkpoint-2", "before replacing trainer_state.json",
             "before replacing pytorch_lora_weights.safetensors")
    chosen = [labels[name] for name in spots if name in labels]
    out = tmp_path / "kill.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kill_points.py"), "--points",
                           ",".join(map(str, chosen)), "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == len(chosen) >= 3 and all(r["killed"] and r["equal"] for r in rows)
    assert results["tested"] >= 50 and results["passed"] == results["tested"]


def kill_points_sentence(results: dict) -> str:
    """How docs/reliability.md quotes benchmarks/results/kill_points.json."""
    return (f"{results['passed']} of {results['tested']} kill points (of the {results['crash_points_in_run']} "
            "crash points in the run) resumed to an adapter equal, tensor for tensor, to the uninterrupted run's")


def soak_sentence(results: dict) -> str:
    """How docs/reliability.md quotes benchmarks/results/soak.json."""
    slope = results["rss_slope_second_half_mib_per_1000_steps"]
    return (f"{results['steps']} steps with a checkpoint every {results['checkpoint_every']}: RSS "
            f"{results['rss_first_mib']:.0f} MiB at step {results['curve'][0]['step']}, "
            f"{results['rss_last_mib']:.0f} MiB at the end (slope over the second half {slope} MiB per "
            f"1,000 steps); the run directory at most {results['disk_max_mib']:.1f} MiB, with at most "
            f"{results['checkpoints_max']} checkpoints")


def test_docs_quote_the_stored_results():
    from bad_inputs import CASES

    results = ROOT / "benchmarks" / "results"
    kill = json.loads((results / "kill_points.json").read_text())
    soak = json.loads((results / "soak.json").read_text())
    docs = (ROOT / "docs" / "reliability.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert kill_points_sentence(kill) in docs
    assert soak_sentence(soak) in docs
    assert f"the {len(CASES)}-case corpus" in docs and f"a corpus of {len(CASES)} damaged inputs" in readme
    assert f"any of the {kill['crash_points_in_run']} moments" in readme
