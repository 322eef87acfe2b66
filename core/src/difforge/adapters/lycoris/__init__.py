"""LoHa (Hadamard product of two low-rank factors) and LoKr (Kronecker product), the LyCORIS
methods, through PEFT."""

from .config import LohaOptions, LokrOptions
from .model import LohaAdapter, LokrAdapter

__all__ = ["LohaAdapter", "LohaOptions", "LokrAdapter", "LokrOptions"]
