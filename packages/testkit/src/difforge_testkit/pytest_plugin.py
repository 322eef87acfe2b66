"""pytest fixtures for difforge and plugin tests: ``-p difforge_testkit.pytest_plugin``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion pipeline (random weights) in diffusers layout, built once."""
    from .components import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "pipeline")


@pytest.fixture(scope="session")
def toy_images(tmp_path_factory) -> Path:
    """16 captioned 32x32 toy images in a folder."""
    from .toydata import write_toy_images

    return write_toy_images(tmp_path_factory.mktemp("toy") / "images", count=16)


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A clean plugin manager for the test, reloaded on first use and reset afterwards."""
    from difforge.plugin_api import reset_plugin_manager

    monkeypatch.delenv("DIFFORGE_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("DIFFORGE_STRICT_PLUGINS", raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def lora_config(tiny_sd_dir, toy_images, tmp_path):
    """A small LoRA run config (dict) on the tiny pipeline and toy images."""
    return {
        "model": {"pretrained": str(tiny_sd_dir)},
        "data": {"dataset": "image-folder", "options": {"path": str(toy_images), "resolution": 32}, "batch_size": 4},
        "adapter": {"type": "lora", "options": {"rank": 4}},
        "train": {"steps": 4, "lr": 1e-3, "seed": 0},
        "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False},
    }


def pytest_configure(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
