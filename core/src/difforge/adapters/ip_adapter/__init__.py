"""IP-Adapter (Ye et al. 2023): decoupled cross-attention for image prompts. An image
embedding is projected to a few extra tokens; every text cross-attention layer gets its own
key/value projections for them and adds ``scale * attention(q, K_img, V_img)`` to the text
attention. The base model stays frozen."""

from .config import IpAdapterOptions
from .model import IpAdapter, IpAttentionTuner

__all__ = ["IpAdapter", "IpAdapterOptions", "IpAttentionTuner"]
