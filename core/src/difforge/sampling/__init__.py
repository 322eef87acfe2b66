"""Sampling: pure-function samplers, guidance, and the schedule they walk."""

from .guidance import classifier_free_guidance, guidance_scale_embedding
from .samplers import (
    ddpm_posterior,
    sample_consistency,
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_flow_euler,
)
from .schedule import SamplingSchedule, schedule_from_scheduler
from .steering import Steered

__all__ = [
    "SamplingSchedule",
    "Steered",
    "classifier_free_guidance",
    "ddpm_posterior",
    "guidance_scale_embedding",
    "sample_consistency",
    "sample_ddim",
    "sample_ddpm",
    "sample_euler",
    "sample_flow_euler",
    "schedule_from_scheduler",
]
