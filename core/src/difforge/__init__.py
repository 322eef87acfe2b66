"""difforge: fine-tune, align and steer diffusion models.

The public API: build or load a :class:`Backbone`, train it with :func:`train`, sample with
:func:`sample`, and extend everything through plugins (:data:`hookimpl`).
"""

from __future__ import annotations

__version__ = "0.1.0"

import logging as _logging

from .hookspecs import hookimpl  # noqa: E402


class _TorchvisionFallbackNotice(_logging.Filter):
    """transformers announces on every process that its image processors fall back to PIL
    without torchvision; difforge never uses them, so the notice is not the user's concern."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


_logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionFallbackNotice())


def __getattr__(name: str):
    # keep `import difforge` light: torch/diffusers load on first use of the API
    lazy = {
        "Backbone": ("backbone", "Backbone"),
        "load_backbone": ("backbone", "load_backbone"),
        "RunConfig": ("config", "RunConfig"),
        "load_config": ("config", "load_config"),
        "Trainer": ("training", "Trainer"),
        "AdapterSet": ("adapters", "AdapterSet"),
        "train": ("api", "train"),
        "sample": ("api", "sample"),
        "steer": ("api", "steer"),
        "load": ("api", "load"),
        "plugin_report": ("plugins", "plugin_report"),
        "lazy": ("registry", "lazy"),
        "read_pairs": ("training.preferences", "read_pairs"),
        "PAIRS_FILE": ("training.preferences", "PAIRS_FILE"),
        "DataError": ("errors", "DataError"),
        "get_registry": ("plugins", "get_registry"),
        "register_plugin": ("plugins", "register_plugin"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'difforge' has no attribute {name!r}")


__all__ = [
    "PAIRS_FILE",
    "AdapterSet",
    "Backbone",
    "DataError",
    "RunConfig",
    "Trainer",
    "__version__",
    "get_registry",
    "hookimpl",
    "lazy",
    "load",
    "load_backbone",
    "load_config",
    "plugin_report",
    "read_pairs",
    "register_plugin",
    "sample",
    "steer",
    "train",
]
