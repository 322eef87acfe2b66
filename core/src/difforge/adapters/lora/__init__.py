"""LoRA (Hu et al. 2021) through PEFT's tuner layers, saved in the diffusers LoRA layout."""

from .config import LoraOptions
from .model import LoraAdapter

__all__ = ["LoraAdapter", "LoraOptions"]
