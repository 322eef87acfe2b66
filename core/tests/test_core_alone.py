"""The core installed alone (``pip install -e core``, no package, no plugin) lists itself, trains
the quickstart config's DreamBooth + LoRA and samples with the result.

Run by ``make core-test`` (part of ``make test``) in its own environment, ``.venv-core``, where
nothing but ``difforge`` and its dependencies is installed.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "packages" / "zoo" / "src" / "difforge_zoo" / "configs" / "quickstart.yaml"
MODEL = ROOT / "packages" / "zoo" / "src" / "difforge_zoo" / "models" / "shapes-sd-tiny"


def test_nothing_but_the_core_is_installed():
    assert [ep.value for ep in entry_points(group="difforge")] == []  # the core registers its built-ins itself
    for extension in ("difforge_align", "difforge_guard", "difforge_zoo", "difforge_testkit", "difforge_audio"):
        with pytest.raises(ImportError):
            __import__(extension)


def test_plugins_command_lists_the_core_and_how_to_install_the_rest():
    done = subprocess.run([sys.executable, "-m", "difforge.cli", "plugins"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("difforge ") and "loaded" in line for line in lines), done.stdout
    assert any(line.startswith("difforge-align") and "not installed" in line for line in lines), done.stdout


def test_trains_the_quickstart_lora_and_samples_with_it(tmp_path):
    import torch

    import difforge

    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):  # a red disc on white, like the quickstart's instance images
        yy, xx = np.mgrid[:32, :32]
        disc = (yy - 16 + i) ** 2 + (xx - 16) ** 2 < 64
        pixels = np.full((32, 32, 3), 255, np.uint8)
        pixels[disc] = (220, 30, 30)
        Image.fromarray(pixels).save(images / f"{i}.png")
    result = difforge.train(str(QUICKSTART), overrides=[
        f"model.pretrained={MODEL}", f"data.options.path={images}", f"output.dir={tmp_path / 'run'}",
        "train.steps=4", "objective.options.num_class_images=2", "objective.options.class_sampling_steps=2",
        "output.tensorboard=false", "output.progress=false", "output.checkpoint_every=0"])
    assert result.steps == 4 and all(np.isfinite(result.losses))
    assert (result.adapter_path / "pytorch_lora_weights.safetensors").exists()
    def sample(backbone):
        return backbone.sample(["a red sks circle"], num_steps=2, generator=torch.Generator().manual_seed(0))

    adapted = sample(difforge.load(MODEL, adapters=[(result.adapter_path, 1.0)]))
    assert adapted.shape == (1, 3, 32, 32) and torch.isfinite(adapted).all()
    assert not torch.equal(adapted, sample(difforge.load(MODEL)))  # the LoRA changes the model


def test_steering_without_a_steering_package_is_one_line(capsys):
    from difforge.cli import main

    code = main(["sample", "--model", "unused", "--prompt", "x", "--steer", "fk", "--reward", "jpeg-compressibility"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "pip install difforge-steer" in err
