"""Options of the composable sparse fine-tuning adapter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SparseFtOptions(BaseModel):
    """``density``: fraction of the target weights kept in the difference (chosen globally, by
    how far phase 1 moved them); ``phase1_fraction``: the share of training spent fine-tuning
    every target entry before the mask is chosen and the difference restarts from zero;
    ``target_modules``: module names or suffixes (empty: every Linear and Conv layer)."""

    model_config = ConfigDict(extra="forbid")

    density: float = Field(0.02, gt=0, le=1)
    phase1_fraction: float = Field(0.5, gt=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
