"""The embedded models of the zoo, shipped inside this package (no downloads)."""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
MODELS = {"shapes-sd-tiny": "a Stable-Diffusion-shaped pipeline trained on the shapes world (see its README.md)",
          "shapes-lcm-tiny": "a latent consistency model distilled from shapes-sd-tiny: 1-8 steps (see its README.md)"}
#: the committed script that trains each model
SCRIPTS = {"shapes-sd-tiny": "train_shapes_sd.py", "shapes-lcm-tiny": "train_shapes_lcm.py"}
#: the diffusers pipeline class of each model (``load(..., as_pipeline=True)``)
PIPELINES = {"shapes-sd-tiny": "StableDiffusionPipeline", "shapes-lcm-tiny": "LatentConsistencyModelPipeline"}


def model_path(name: str) -> Path:
    """The local directory of a zoo model; a clear error if the name is unknown."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(sorted(MODELS))}")
    path = MODELS_DIR / name
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(f"zoo model {name!r} is not present at {path}; "
                                f"train it with packages/zoo/training/{SCRIPTS[name]}")
    return path


def load(name: str = "shapes-sd-tiny", as_pipeline: bool = False):
    """The model's local path, or (``as_pipeline=True``) its diffusers pipeline loaded offline
    (``StableDiffusionPipeline``; ``LatentConsistencyModelPipeline`` for shapes-lcm-tiny)."""
    path = model_path(name)
    if not as_pipeline:
        return path
    import diffusers

    pipeline = getattr(diffusers, PIPELINES[name])
    return pipeline.from_pretrained(path, local_files_only=True, use_safetensors=True)
