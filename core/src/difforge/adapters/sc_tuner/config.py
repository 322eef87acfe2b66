"""Options of the SC-Tuner adapter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ScTunerOptions(BaseModel):
    """``hidden_ratio``: each tuner's hidden width as a share of its skip's channels;
    ``condition_channels``: channels of a condition map (0: plain SC-Tuner; > 0: CSC-Tuner,
    passed per call as the extra input ``condition_map``)."""

    model_config = ConfigDict(extra="forbid")

    hidden_ratio: float = Field(0.25, gt=0, le=4)
    condition_channels: int = Field(0, ge=0)
