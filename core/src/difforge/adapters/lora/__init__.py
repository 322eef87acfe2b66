"""LoRA (Hu et al. 2021) and DoRA (Liu et al. 2024) through PEFT's tuner layers, saved in the
diffusers LoRA layout."""

from .config import DEFAULT_TARGET_MODULES, DoraOptions, LoraOptions
from .model import DoraAdapter, LoraAdapter

__all__ = ["DEFAULT_TARGET_MODULES", "DoraAdapter", "DoraOptions", "LoraAdapter", "LoraOptions"]
