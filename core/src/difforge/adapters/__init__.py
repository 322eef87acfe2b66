"""Adapters: one protocol (:class:`AdapterType`), one registry, and :class:`AdapterSet` to
stack several named adapters on a model with per-adapter weights and merge them.

PEFT provides LoRA, DoRA, LoHa, LoKr and OFT; difforge adds DiffFit, SaRA, Orthogonal
Adaptation, composable sparse fine-tuning, SCEdit's SC-Tuner and IP-Adapter on the same protocol.
"""

from __future__ import annotations

from .base import AdapterType
from .composition import MERGE_STRATEGIES, AdapterSet, adapter_component_of_file, adapter_type_of_file
from .difffit import DiffFitAdapter, DiffFitOptions
from .ip_adapter import IpAdapter, IpAdapterOptions
from .layer_adapter import LayerAdapter
from .lora import DoraAdapter, DoraOptions, LoraAdapter, LoraOptions
from .lycoris import LohaAdapter, LohaOptions, LokrAdapter, LokrOptions
from .oft import OftAdapter, OftOptions
from .orthogonal import OrthogonalAdapter, OrthogonalOptions
from .peft_tuner import PeftAdapter
from .sara import SaraAdapter, SaraOptions
from .sc_tuner import ScTunerAdapter, ScTunerOptions
from .sparse_ft import SparseFtAdapter, SparseFtOptions
from .tuned_layer import TunedLayer, Tuner

__all__ = [
    "MERGE_STRATEGIES", "AdapterSet", "AdapterType", "DiffFitAdapter", "DiffFitOptions",
    "DoraAdapter", "DoraOptions", "IpAdapter", "IpAdapterOptions", "LayerAdapter", "LohaAdapter", "LohaOptions",
    "LokrAdapter", "LokrOptions", "LoraAdapter", "LoraOptions", "OftAdapter", "OftOptions", "OrthogonalAdapter",
    "OrthogonalOptions", "PeftAdapter", "SaraAdapter", "SaraOptions", "ScTunerAdapter", "ScTunerOptions",
    "SparseFtAdapter", "SparseFtOptions", "TunedLayer", "Tuner",
    "adapter_component_of_file", "adapter_type_of_file",
]
