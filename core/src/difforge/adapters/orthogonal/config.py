"""Options of the Orthogonal Adaptation adapter."""

from __future__ import annotations

from pydantic import Field

from ..lora.config import LoraOptions


class OrthogonalOptions(LoraOptions):
    """LoRA options plus ``slot`` (this concept's index: its down-projection is rows
    ``slot * rank ... (slot + 1) * rank`` of each layer's basis) and ``basis_seed`` (the seed
    of the bases, shared by every concept that is to be merged)."""

    slot: int = Field(0, ge=0)
    basis_seed: int = 0
