"""Shared fixtures: the installed example plugin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory) -> Path:
    """examples/third_party_plugin really installed (pip, no deps) into a temporary target."""
    target = tmp_path_factory.mktemp("example-plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT / "examples" / "third_party_plugin")],
        check=True, capture_output=True, text=True,
    )
    return target
