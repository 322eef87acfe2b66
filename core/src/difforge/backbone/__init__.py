"""The diffusion backbone: denoiser + scheduler + parameterisation."""

from .backbone import Backbone, conditioning_kind, denoiser_spec
from .loading import load_backbone, resolve_model_path, save_single_file
from .parameterization import X0, Epsilon, FlowMatching, Parameterization, VPrediction
from .specs import CONDITIONING_KINDS, DenoiserSpec

__all__ = [
    "CONDITIONING_KINDS",
    "Backbone",
    "DenoiserSpec",
    "Epsilon",
    "FlowMatching",
    "Parameterization",
    "VPrediction",
    "X0",
    "conditioning_kind",
    "denoiser_spec",
    "load_backbone",
    "resolve_model_path",
    "save_single_file",
]
