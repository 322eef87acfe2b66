"""The embedded models of the zoo, shipped inside this package (no downloads)."""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
MODELS = {"shapes-sd-tiny": "a Stable-Diffusion-shaped pipeline trained on the shapes world (see its README.md)",
          "shapes-lcm-tiny": "a latent consistency model distilled from shapes-sd-tiny: 1-8 steps (see its README.md)",
          "shapes-sr-mr": "a mean-reverting diffusion model: 4x super-resolution of shapes scenes (see its README.md)"}
#: the committed script that trains each model
SCRIPTS = {"shapes-sd-tiny": "train_shapes_sd.py", "shapes-lcm-tiny": "train_shapes_lcm.py",
           "shapes-sr-mr": "train_shapes_sr_mr.py"}
#: the diffusers pipeline class of each model (``load(..., as_pipeline=True)``); shapes-sr-mr has none
#: (``difforge_solvers.mean_reverting.load_mean_reverting`` loads it)
PIPELINES = {"shapes-sd-tiny": "StableDiffusionPipeline", "shapes-lcm-tiny": "LatentConsistencyModelPipeline"}

#: the file that marks a model's directory as complete, where it is not ``model_index.json``
MARKERS = {"shapes-sr-mr": "mean_reverting.json"}


def model_path(name: str) -> Path:
    """The local directory of a zoo model; a clear error if the name is unknown."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(sorted(MODELS))}")
    path = MODELS_DIR / name
    if not (path / MARKERS.get(name, "model_index.json")).exists():
        raise FileNotFoundError(f"zoo model {name!r} is not present at {path}; "
                                f"train it with packages/zoo/training/{SCRIPTS[name]}")
    return path


def load(name: str = "shapes-sd-tiny", as_pipeline: bool = False):
    """The model's local path, or (``as_pipeline=True``) its diffusers pipeline loaded offline
    (``StableDiffusionPipeline``; ``LatentConsistencyModelPipeline`` for shapes-lcm-tiny)."""
    path = model_path(name)
    if not as_pipeline:
        return path
    if name not in PIPELINES:
        raise ValueError(f"zoo model {name!r} is not a diffusers pipeline; load its directory instead")
    import diffusers

    pipeline = getattr(diffusers, PIPELINES[name])
    return pipeline.from_pretrained(path, local_files_only=True, use_safetensors=True)
