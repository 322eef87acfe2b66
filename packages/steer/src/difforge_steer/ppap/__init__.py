"""PPAP, practical plug-and-play guidance (Go et al. 2023): timestep-range expert guiders made
from a clean classifier by LoRA fine-tuning on noisy inputs with data-free knowledge transfer,
then classifier guidance with the expert of each step (``difforge train-guiders``, ``difforge guide``)."""

from __future__ import annotations

__all__ = ["ExpertGuider", "LatentClassifier", "PPAPConfig", "classifier_guidance", "distill_experts",
           "expert_agreement", "expert_boundaries", "generate_clean_samples", "train_classifier"]

_MODULES = {"LatentClassifier": "classifier", "train_classifier": "classifier", "ExpertGuider": "experts",
            "PPAPConfig": "experts", "distill_experts": "experts", "expert_agreement": "experts",
            "expert_boundaries": "experts",
            "generate_clean_samples": "experts", "classifier_guidance": "guidance"}


def __getattr__(name: str):
    import importlib

    if name in _MODULES:
        return getattr(importlib.import_module(f"difforge_steer.ppap.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'difforge_steer.ppap' has no attribute {name!r}")
