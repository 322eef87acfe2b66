"""The embedded audio models and how to load them (local files only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"
BASE_MODEL = "music-sd-tiny"
CONTROLNET = "music-controlnet-tiny"
TANGO2 = "music-sd-tiny-tango2"
MODELS = {
    BASE_MODEL: "text-to-spectrogram diffusion model of the music world (difforge backbone directory)",
    CONTROLNET: "Music ControlNet (melody, dynamics, rhythm) for music-sd-tiny (diffusers ControlNetModel)",
    TANGO2: "Tango 2 (Diffusion-DPO on event-misordering pairs) LoRA for music-sd-tiny (diffusers LoRA layout)",
}


def model_path(name: str) -> Path:
    """The directory of an embedded model; a clear error if it is unknown or missing."""
    if name not in MODELS:
        raise ValueError(f"unknown audio model {name!r}; known: {', '.join(MODELS)}")
    path = MODELS_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: the {name} weights are missing; train them with plugins/audio/training/")
    return path


def resolve(reference: str | Path) -> Path:
    """An embedded model's directory by name, or ``reference`` itself as a path."""
    return model_path(str(reference)) if str(reference) in MODELS else Path(reference)


def load_base(reference: str | Path = BASE_MODEL, adapters: Sequence[tuple[str | Path, float]] = ()):
    """The text-to-spectrogram backbone (``difforge.Backbone``), by name or path, with optional
    LoRAs ``[(name or path, weight), ...]`` (e.g. ``[(TANGO2, 1.0)]``)."""
    import difforge

    return difforge.load(resolve(reference), adapters=[(resolve(a), w) for a, w in adapters])


def load_controlnet(reference: str | Path = CONTROLNET):
    """The Music ControlNet (``diffusers.ControlNetModel``), by name or path; safetensors only."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_pretrained(resolve(reference), local_files_only=True, use_safetensors=True).eval()
