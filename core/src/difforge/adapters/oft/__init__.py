"""OFT (Qiu et al. 2023): a learned block-diagonal orthogonal rotation of each target weight,
through PEFT."""

from .config import OftOptions
from .model import OftAdapter

__all__ = ["OftAdapter", "OftOptions"]
