"""The embedded models of the zoo, shipped inside this package (no downloads)."""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
MODELS = {"shapes-sd-tiny": "a Stable-Diffusion-shaped pipeline trained on the shapes world (see its README.md)"}


def model_path(name: str) -> Path:
    """The local directory of a zoo model; a clear error if the name is unknown."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(sorted(MODELS))}")
    path = MODELS_DIR / name
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(f"zoo model {name!r} is not present at {path}; "
                                "train it with packages/zoo/training/train_shapes_sd.py")
    return path


def load(name: str = "shapes-sd-tiny", as_pipeline: bool = False):
    """The model's local path, or (``as_pipeline=True``) a ``StableDiffusionPipeline`` loaded offline."""
    path = model_path(name)
    if not as_pipeline:
        return path
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(path, local_files_only=True, use_safetensors=True)
