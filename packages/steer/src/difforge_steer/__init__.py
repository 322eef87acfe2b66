"""difforge-steer: inference-time steering of any difforge model toward a reward, without
training. Registered as steering methods ``fk``, ``svdd`` and ``best-of-n``
(``difforge sample --steer NAME --reward NAME --particles K``); and PPAP classifier guidance
(:mod:`difforge_steer.ppap`, ``difforge train-guiders`` / ``difforge guide``)."""

from __future__ import annotations

__all__ = ["FKOptions", "SVDDOptions", "BestOfNOptions", "best_of_n", "fk_steering", "svdd"]


def __getattr__(name: str):
    import importlib

    modules = {"FKOptions": "fk", "fk_steering": "fk", "SVDDOptions": "svdd", "svdd": "svdd",
               "BestOfNOptions": "best_of_n", "best_of_n": "best_of_n"}
    if name in modules:
        return getattr(importlib.import_module(f"difforge_steer.{modules[name]}"), name)
    raise AttributeError(f"module 'difforge_steer' has no attribute {name!r}")
