"""SaRA (Hu et al. 2024): re-use the smallest-magnitude weights of each layer as a sparse
trainable update, kept low-rank by a nuclear-norm penalty and progressively re-selected."""

from .config import SaraOptions
from .model import SaraAdapter, SparseDeltaTuner

__all__ = ["SaraAdapter", "SaraOptions", "SparseDeltaTuner"]
