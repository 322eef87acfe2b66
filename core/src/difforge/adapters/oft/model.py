"""The OFT adapter type. A rotation cannot be scaled continuously, so weights are 1 (on) or 0 (off)."""

from __future__ import annotations

from ..peft_tuner import PeftAdapter
from .config import OftOptions


class OftAdapter(PeftAdapter):
    """OFT (Qiu et al. 2023, "Controlling Text-to-Image Diffusion by Orthogonal Finetuning")."""

    name = "oft"
    options_model = OftOptions
    peft_type = "OFT"
    scalable = False
