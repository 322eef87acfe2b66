"""difforge-zoo: the shapes world and its analytic scorer.

Names are imported on first use, so loading the plugin (``difforge_zoo.plugin``) at difforge's
start-up imports neither NumPy nor the world's modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"detect": "scorer", "score": "scorer", "generate": "shapes", "load": "models"}
_MODULES = ("scorer", "shapes")

__all__ = ["detect", "generate", "load", "score", "scorer", "shapes"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
