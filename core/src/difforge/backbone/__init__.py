"""The diffusion backbone: denoiser + scheduler + parameterisation."""

from .backbone import Backbone, conditioning_kind
from .builders import BUILTIN_BACKBONES
from .loading import load_backbone, resolve_model_path, save_single_file
from .parameterization import (
    BUILTIN_PARAMETERIZATIONS,
    X0,
    Epsilon,
    FlowMatching,
    Parameterization,
    VPrediction,
)

__all__ = [
    "BUILTIN_BACKBONES",
    "BUILTIN_PARAMETERIZATIONS",
    "Backbone",
    "Epsilon",
    "FlowMatching",
    "Parameterization",
    "VPrediction",
    "X0",
    "conditioning_kind",
    "load_backbone",
    "resolve_model_path",
    "save_single_file",
]
