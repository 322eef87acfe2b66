"""The embedded audio models and how to load them (local files only)."""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"
BASE_MODEL = "music-sd-tiny"
CONTROLNET = "music-controlnet-tiny"
MODELS = {
    BASE_MODEL: "text-to-spectrogram diffusion model of the music world (difforge backbone directory)",
    CONTROLNET: "Music ControlNet (melody, dynamics, rhythm) for music-sd-tiny (diffusers ControlNetModel)",
}


def model_path(name: str) -> Path:
    """The directory of an embedded model; a clear error if it is unknown or missing."""
    if name not in MODELS:
        raise ValueError(f"unknown audio model {name!r}; known: {', '.join(MODELS)}")
    path = MODELS_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: the {name} weights are missing; train them with plugins/audio/training/")
    return path


def load_base(reference: str | Path = BASE_MODEL):
    """The text-to-spectrogram backbone (``difforge.Backbone``), by name or path."""
    from difforge import load_backbone

    path = model_path(reference) if str(reference) in MODELS else Path(reference)
    return load_backbone(path)


def load_controlnet(reference: str | Path = CONTROLNET):
    """The Music ControlNet (``diffusers.ControlNetModel``), by name or path; safetensors only."""
    from diffusers import ControlNetModel

    path = model_path(reference) if str(reference) in MODELS else Path(reference)
    return ControlNetModel.from_pretrained(path, local_files_only=True, use_safetensors=True).eval()
