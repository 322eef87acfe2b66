"""difforge-testkit: tiny but real diffusers components, toy data and plugin checks.

Everything is built locally from code (no downloads), so tests of difforge and of its
plugins run offline in seconds.
"""

from .adapters import check_adapter_type
from .components import (
    build_tiny_sd,
    tiny_text_encoder,
    tiny_unet,
    tiny_vae,
)
from .conformance import check_plugin
from .replay import recording_objective, snapshot, update_difference
from .tokenizers import build_clip_tokenizer
from .toydata import write_toy_images

__all__ = [
    "build_clip_tokenizer",
    "build_tiny_sd",
    "check_adapter_type",
    "check_plugin",
    "recording_objective",
    "snapshot",
    "tiny_text_encoder",
    "tiny_unet",
    "tiny_vae",
    "update_difference",
    "write_toy_images",
]
