"""Readable sample grids (upscaled, labelled, marked) and the run report every training writes."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from helpers import plugin_module, run_cli
from PIL import Image

import difforge
from difforge.errors import UsageError
from difforge.plugins import register_plugin
from difforge.report import svg_line_chart, write_report
from difforge.sampling.grid import RIGHT, WRONG, labelled_grid, render, save_grid


def tiles(n: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def test_tiles_are_upscaled_labelled_and_marked():
    plain = labelled_grid(tiles(4), columns=2)
    assert plain.size == (2 * (96 + 4) + 4, 2 * (96 + 4) + 4)  # 32 px tiles, scale 3, 4 px gaps
    grid = labelled_grid(tiles(4), columns=2, row_labels=["base model: “a red circle”", "tuned: “a red circle”"],
                         column_labels=["seed 0", "seed 1"], verdicts=[True, False, None, True], title="before/after")
    assert grid.width > plain.width and grid.height > plain.height  # room for the labels and the title
    pixels = np.asarray(grid)
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    assert RIGHT in colours and WRONG in colours
    text_area = pixels[:, : grid.width - plain.width]  # the row labels' margin holds dark text pixels
    assert (text_area.min(axis=-1) < 80).sum() > 50


def test_label_counts_must_match():
    with pytest.raises(ValueError, match="3 row labels for 2 rows"):
        labelled_grid(tiles(4), columns=2, row_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="1 verdicts for 4 tiles"):
        labelled_grid(tiles(4), columns=2, verdicts=[True])


def test_auto_renderer_draws_images_and_clip_frames_and_names_what_it_cannot():
    clips = torch.zeros(2, 3, 4, 8, 8)
    clips[:, :, 2] = 1.0  # the third frame white
    drawn = render(clips)
    assert drawn.shape == (2, 8, 32, 3)
    assert (drawn[:, :, 16:24] == 255).all() and (drawn[:, :, :16] == 128).all()
    assert render(torch.zeros(3, 1, 8, 8)).shape == (3, 8, 8, 3)  # grey images as RGB
    with pytest.raises(ValueError, match=r"got \(2, 7\); name a renderer"):
        render(torch.zeros(2, 7))


def test_difforge_register_renderers_draws_a_plugin_sample_kind(tmp_path):
    def bars(samples):  # a 1-D signal as a bar chart tile
        out = np.full((len(samples), 8, samples.shape[-1], 3), 255, np.uint8)
        for i, signal in enumerate(samples):
            for x, v in enumerate(signal.tolist()):
                out[i, 8 - max(1, round(v * 8)):, x] = (0, 0, 0)
        return out

    register_plugin(plugin_module("bars", difforge_register_renderers=lambda: {"bars": bars}), "bars-renderer")
    path = save_grid(torch.rand(3, 16), tmp_path / "bars.png", renderer="bars", row_labels=["a", "b", "c"])
    assert Image.open(path).size[1] >= 3 * 96


def test_sample_cli_writes_a_labelled_grid(tiny_sd_dir, tmp_path):
    out = tmp_path / "grid.png"
    done = run_cli("sample", "--model", str(tiny_sd_dir), "--prompt", "a red circle", "--prompt", "a blue square",
                   "--steps", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    grid = Image.open(out)
    assert grid.height >= 2 * 96 and grid.width > 96 + 100  # two rows of readable tiles, a label margin


@pytest.fixture(scope="module")
def run_dir(tiny_sd_dir, toy_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-run") / "run"
    difforge.train({
        "model": {"pretrained": str(tiny_sd_dir)},
        "data": {"dataset": "image-folder", "options": {"path": str(toy_images), "resolution": 32}, "batch_size": 4},
        "adapter": {"type": "lora", "options": {"rank": 4}},
        "train": {"steps": 6, "lr": 1e-3, "lr_scheduler": "cosine", "warmup_steps": 2, "seed": 0},
        "output": {"dir": str(out), "tensorboard": False, "progress": False, "sample_every": 3,
                   "sample_prompts": ["a red circle", "a blue square"], "sample_steps": 2,
                   "sample_metrics": ["pixel-statistics"]},
    })
    return out


def images_in(page: str) -> list[Image.Image]:
    sources = re.findall(r"<img src='([^']*)'", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    return [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) for s in sources]


def test_training_writes_a_self_contained_report(run_dir):
    page = (run_dir / "report.html").read_text()
    assert (run_dir / "history.json").exists()
    assert "<svg" in page and "loss" in page and "learning rate" in page
    assert "step 3" in page and "step 6" in page  # the sample grids over training, with their metrics
    assert page.count("<td>pixel-statistics / diversity</td>") == 2  # each grid's metrics
    assert "load_lora_weights" in page and str(run_dir / "adapter") in page
    assert "objective" in page and "lr_scheduler: cosine" in page  # the config
    assert "steps_per_second" in page and "peak_memory_mib" in page
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # nothing outside the file
    assert "<script" not in page
    grids = images_in(page)
    assert len(grids) == 2 and all(g.height >= 2 * 96 for g in grids)


def test_report_command_rewrites_it(run_dir):
    (run_dir / "report.html").unlink()
    done = run_cli("report", str(run_dir))
    assert done.returncode == 0 and (run_dir / "report.html").exists(), done.stderr[-2000:]


def test_loss_chart_scales_to_the_values():
    svg = svg_line_chart([4.0, 2.0, 1.0], "loss")
    assert ">4<" in svg and ">1<" in svg and svg.count("<polyline") == 1
    assert "no values" in svg_line_chart([float("nan")], "loss")


def test_report_refuses_a_missing_directory(tmp_path):
    with pytest.raises(UsageError, match="not a run directory"):
        write_report(tmp_path / "nope")


@pytest.mark.parametrize(("flag", "value", "says"), [("--steps", "0", "must be at least 1, got 0"),
                                                     ("--steps", "-3", "must be at least 1, got -3"),
                                                     ("--guidance", "nan", "must be a finite number, got nan")])
def test_sample_cli_refuses_bad_numbers(tiny_sd_dir, tmp_path, flag, value, says):
    out = tmp_path / "g.png"
    done = run_cli("sample", "--model", str(tiny_sd_dir), "--prompt", "a", flag, value, "--out", str(out))
    assert done.returncode != 0 and says in done.stderr and not out.exists()


def test_non_finite_samples_fail_with_one_line_and_write_nothing(tiny_sd_dir, tmp_path):
    from difforge.errors import SamplingError

    backbone = difforge.load_backbone(tiny_sd_dir)
    with torch.no_grad():
        next(backbone.denoiser.parameters()).fill_(float("nan"))
    with pytest.raises(SamplingError, match="gave non-finite values") as err:
        difforge.sample(backbone, ["a red circle"], num_steps=2, out=tmp_path / "g.png")
    assert "\n" not in str(err.value) and not (tmp_path / "g.png").exists()
