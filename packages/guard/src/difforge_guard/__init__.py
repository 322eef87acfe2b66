"""difforge-guard: FreezeAsGuard (Huang et al. 2024), which learns which tensors of a
pre-trained model to freeze so that fine-tuning on a protected domain is hampered while a legal
domain stays adaptable; the mask it writes is a ``train.freeze_mask`` file the core honours."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["FreezeMask", "evaluate_freeze_mask", "freeze_guard", "learn_freeze_mask", "random_freeze_mask"]


def __getattr__(name: str) -> Any:
    # the mask learner imports torch: loaded on first use, so registering the plugin stays light
    if name not in __all__:
        raise AttributeError(f"module 'difforge_guard' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.mask"), name)
