"""Options of the LoHa and LoKr adapters."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..lora.config import DEFAULT_TARGET_MODULES


class _LycorisOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: int = Field(4, ge=1)
    alpha: float | None = Field(None, gt=0)
    rank_dropout: float = Field(0.0, ge=0, lt=1)
    module_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))

    def _common(self) -> dict:
        return {"r": self.rank, "alpha": self.alpha if self.alpha is not None else self.rank,
                "rank_dropout": self.rank_dropout, "module_dropout": self.module_dropout,
                "target_modules": list(self.target_modules)}


class LohaOptions(_LycorisOptions):
    """``W + (alpha / rank) (B1 A1) * (B2 A2)`` (Hadamard product): rank ``rank**2`` updates from
    ``2 x`` LoRA's parameters."""

    def to_peft(self):
        """The equivalent ``peft.LoHaConfig``."""
        from peft import LoHaConfig

        return LoHaConfig(**self._common())


class LokrOptions(_LycorisOptions):
    """``W + (alpha / rank) C kron (B A)`` (Kronecker product); ``decompose_factor`` picks the
    factorisation of the layer's dimensions (-1: as square as possible)."""

    decompose_factor: int = -1
    decompose_both: bool = False

    def to_peft(self):
        """The equivalent ``peft.LoKrConfig``."""
        from peft import LoKrConfig

        return LoKrConfig(**self._common(), decompose_factor=self.decompose_factor,
                          decompose_both=self.decompose_both)
