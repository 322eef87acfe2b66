"""Options of the SaRA adapter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SaraOptions(BaseModel):
    """``ratio``: fraction of each target weight (its smallest |w|) that trains;
    ``target_modules``: module names or suffixes (empty: every Linear and Conv layer);
    ``nuclear_weight``: weight of the nuclear norm of each layer's sparse update in the loss;
    ``reselect_at``: fractions of training at which the trainable entries are re-selected
    (the update so far is kept, and the now-smallest entries become the trainable ones)."""

    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(0.1, gt=0, le=1)
    target_modules: list[str] = Field(default_factory=list)
    nuclear_weight: float = Field(1e-4, ge=0)
    reselect_at: list[float] = Field(default_factory=lambda: [0.5])
