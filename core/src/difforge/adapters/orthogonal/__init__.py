"""Orthogonal Adaptation (Po et al. 2024): each concept's LoRA uses a fixed down-projection made
of its own rows of a shared random orthogonal basis; only the up-projection trains, so
independently trained concepts have (nearly) orthogonal residuals and can be summed."""

from .config import OrthogonalOptions
from .model import OrthogonalAdapter, orthogonal_basis

__all__ = ["OrthogonalAdapter", "OrthogonalOptions", "orthogonal_basis"]
