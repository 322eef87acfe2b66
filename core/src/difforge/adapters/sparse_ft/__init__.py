"""Composable sparse fine-tuning (Ansell et al. 2022, LT-SFT): a lottery-ticket-style sparse
difference vector; several compose by addition."""

from .config import SparseFtOptions
from .model import MaskedDeltaTuner, SparseFtAdapter

__all__ = ["MaskedDeltaTuner", "SparseFtAdapter", "SparseFtOptions"]
