"""Sampling: pure-function samplers, guidance, and the schedule they walk."""

from .guidance import classifier_free_guidance, guidance_scale_embedding
from .samplers import (
    ddpm_posterior,
    ddpm_step,
    sample_consistency,
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_flow_euler,
    timestep_batch,
)
from .schedule import SamplingSchedule, schedule_from_scheduler
from .steering import Steered

__all__ = [
    "SamplingSchedule",
    "Steered",
    "classifier_free_guidance",
    "ddpm_posterior",
    "ddpm_step",
    "guidance_scale_embedding",
    "sample_consistency",
    "sample_ddim",
    "sample_ddpm",
    "sample_euler",
    "sample_flow_euler",
    "schedule_from_scheduler",
    "timestep_batch",
]
