"""The run report in a real browser: headless Chromium opens a quickstart-sized report from disk,
logs no console message, and paints its images (the grid's verdict marks and the loss curve are
on the screenshot). Chromium is Debian's package, installed here when absent; the test is
skipped, saying why, only when it cannot be installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

import difforge
from difforge.report import write_report
from difforge.sampling.grid import RIGHT, WRONG, save_grid

VOID = {"meta", "img", "br", "hr", "link", "input", "polyline", "line"}
LOSS_STROKE = (0x1F, 0x5F, 0xBF)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium's path; installs Debian's ``chromium`` with apt-get (as root, or with passwordless sudo) if absent."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("Chromium is not installed and there is no apt-get to install it")
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        pytest.skip("Chromium is not installed and installing it needs root or sudo")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        done = subprocess.run(prefix + command, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"Chromium could not be installed ({' '.join(command[1:])}: {reason})")
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("apt-get installed chromium but it is not on PATH")
    return path


class Structure(HTMLParser):
    """Checks that every element is closed in order and collects the attributes that load things."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.sources += [value for name, value in attrs if name in ("src", "href") and value is not None]
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.sources += [value for name, value in attrs if name in ("src", "href") and value is not None]

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1] if self.open else 'nothing'}")
        else:
            self.open.pop()


@pytest.fixture(scope="module")
def report(tiny_sd_dir, toy_images, tmp_path_factory):
    """A quickstart-sized report: a short LoRA run with sample grids, plus a labelled 4x8
    before/after grid with verdicts and a metrics table."""
    run = tmp_path_factory.mktemp("browser") / "run"
    difforge.train({
        "model": {"pretrained": str(tiny_sd_dir)},
        "data": {"dataset": "image-folder", "options": {"path": str(toy_images), "resolution": 32}, "batch_size": 4},
        "adapter": {"type": "lora", "options": {"rank": 4}},
        "train": {"steps": 20, "lr": 1e-3, "seed": 0},
        "output": {"dir": str(run), "tensorboard": False, "progress": False, "sample_every": 10,
                   "sample_prompts": ["a red circle", "a blue square"], "sample_steps": 2},
    })
    images = torch.rand(32, 3, 32, 32) * 2 - 1
    grid = save_grid(images, run.parent / "before_after.png", columns=8,
                     row_labels=[f"row {i}: “a red sks circle”" for i in range(4)],
                     column_labels=[f"sample {k + 1}" for k in range(8)],
                     verdicts=[bool(i % 3) for i in range(32)], title="before / after")
    return write_report(run, title="quickstart-sized report", figures=[("before and after", grid)],
                        metrics={"base": {"concept_fidelity": 0.03}, "dreambooth": {"concept_fidelity": 0.66}})


def test_report_html_is_well_formed_and_self_contained(report):
    parser = Structure()
    parser.feed(report.read_text())
    assert not parser.problems and parser.open == [], (parser.problems, parser.open)
    assert parser.sources and all(s.startswith("data:image/png;base64,") for s in parser.sources)


def test_chromium_renders_the_report(chromium, report, tmp_path):
    shot = tmp_path / "report.png"
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1200,3200",
                           report.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)

    def painted(colour, tolerance=10) -> int:
        return int((np.abs(pixels - np.array(colour)).max(axis=1) <= tolerance).sum())

    assert painted(RIGHT) > 20 and painted(WRONG) > 20  # the before/after grid's verdict marks
    assert painted(LOSS_STROKE) > 50  # the loss curve
    assert pixels.std() > 20  # not a blank page
