"""SCEdit's SC-Tuner (Jiang et al. 2024): light tuners that edit the UNet's skip connections
(the encoder features the decoder concatenates); the controllable variant (CSC-Tuner) adds a
condition map's features to each skip before its tuner."""

from .config import ScTunerOptions
from .model import ScTuner, ScTunerAdapter

__all__ = ["ScTuner", "ScTunerAdapter", "ScTunerOptions"]
