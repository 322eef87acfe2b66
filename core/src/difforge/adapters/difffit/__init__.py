"""DiffFit (Xie et al. 2023): fine-tune only bias terms, norm affine parameters, the condition
embeddings and newly added per-channel scale factors gamma on the residual branches."""

from .config import DiffFitOptions
from .model import DiffFitAdapter, DiffFitTuner

__all__ = ["DiffFitAdapter", "DiffFitOptions", "DiffFitTuner"]
