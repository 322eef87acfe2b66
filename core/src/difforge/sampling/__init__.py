"""Sampling: pure-function samplers, guidance, and the schedule they walk."""

from .guidance import BUILTIN_GUIDANCE, classifier_free_guidance
from .samplers import (
    BUILTIN_SAMPLERS,
    sample_consistency,
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_flow_euler,
)
from .schedule import SamplingSchedule, schedule_from_scheduler

__all__ = [
    "BUILTIN_GUIDANCE",
    "BUILTIN_SAMPLERS",
    "SamplingSchedule",
    "classifier_free_guidance",
    "sample_consistency",
    "sample_ddim",
    "sample_ddpm",
    "sample_euler",
    "sample_flow_euler",
    "schedule_from_scheduler",
]
