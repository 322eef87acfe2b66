"""Load a :class:`Backbone` from local files only: diffusers directories or single-file safetensors.

Weights are read only from safetensors; nothing is fetched from a hub.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..errors import ConfigError, DifforgeError, WeightsError
from ..weights import first_line, read_safetensors, require_finite_module
from .backbone import SINGLE_FILE_CONFIG_KEY, Backbone

SINGLE_FILE_SCHEDULER_KEY = "difforge_scheduler_config"


def resolve_model_path(reference: str | Path) -> Path:
    """A local path for ``reference``: an existing path, or what a plugin resolves it to."""
    path = Path(reference).expanduser()
    if path.exists():
        return path
    from ..plugins import get_plugin_manager

    pm = get_plugin_manager()
    resolved = pm.hook.difforge_resolve_model(reference=str(reference))
    if resolved is None:
        raise ConfigError(
            f"model {str(reference)!r} not found: it is not a local path and no installed plugin "
            "resolves it (see `difforge plugins`)"
        )
    return Path(resolved)


@contextmanager
def _quiet_progress():
    """Hide diffusers/transformers per-component loading bars (difforge shows its own progress)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    modules = [m for m in (diffusers_logging, transformers_logging) if m.is_progress_bar_enabled()]
    for module in modules:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module in modules:
            module.enable_progress_bar()


def _class(name: str):
    """A diffusers class, or a plugin's denoiser class named by its registered spec's ``model_class``."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is not None:
        return cls
    from ..plugins import get_registry
    from ..registry import lazy

    registry = get_registry("denoisers")
    spec = registry.get(name) if name in registry else None
    if spec is None or spec.model_class is None:
        raise ConfigError(f"unknown model class {name!r}: not in diffusers, and no registered denoiser spec "
                          "names its model_class")
    return lazy(spec.model_class).load()


def load_backbone(path: str | Path, *, torch_dtype: torch.dtype | None = None, **options: Any) -> Backbone:
    """Load a backbone from a pipeline directory (``model_index.json``), a difforge backbone
    directory, a single diffusers model directory (``config.json``) or a ``.safetensors`` file.

    ``options`` go to :class:`Backbone` (``parameterization``, ``loss_weighting``, ...).
    """
    path = resolve_model_path(path)
    _refuse_pickled_weights(path)
    with _quiet_progress():
        try:
            backbone = _load(path, torch_dtype, options)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            if isinstance(exc, DifforgeError):
                raise
            raise WeightsError(f"model {path}: cannot be loaded ({first_line(exc)})") from None
    for name in ("denoiser", "vae", "text_encoder"):
        require_finite_module(getattr(backbone, name, None), f"model {path}: {name}")
    return backbone


def _refuse_pickled_weights(path: Path) -> None:
    """A model directory whose weights are only pickles (``.bin``/``.pt``/``.ckpt``) is refused
    with a line saying so, rather than diffusers' "no file named ..." deep in a traceback."""
    if not path.is_dir():
        return
    weights = [p for p in path.rglob("*") if p.suffix in {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}]
    pickled = [p for p in weights if p.suffix != ".safetensors"]
    for folder in sorted({p.parent for p in pickled}):
        if not any(p.parent == folder and p.suffix == ".safetensors" for p in weights):
            example = next(p for p in pickled if p.parent == folder)
            raise WeightsError(f"model {path}: {example.relative_to(path)} is a pickled weights file and there is "
                               "no .safetensors beside it; difforge loads safetensors only (convert it with "
                               "safetensors.torch.save_file)")


def _load(path: Path, torch_dtype, options: dict[str, Any]) -> Backbone:
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ConfigError(f"{path}: only .safetensors single files can be loaded")
        return _load_single_file(path, torch_dtype=torch_dtype, **options)
    if (path / "model_index.json").exists():
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(
            path, local_files_only=True, use_safetensors=True, torch_dtype=torch_dtype
        )
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        return Backbone(
            denoiser,
            pipe.scheduler,
            vae=getattr(pipe, "vae", None),
            text_encoder=getattr(pipe, "text_encoder", None),
            tokenizer=getattr(pipe, "tokenizer", None),
            **options,
        )
    if (path / "difforge_backbone.json").exists():
        meta = json.loads((path / "difforge_backbone.json").read_text())
        denoiser = _load_model_dir(path / "denoiser", torch_dtype)
        scheduler = _load_scheduler(path / "scheduler")
        vae = _load_model_dir(path / "vae", torch_dtype) if (path / "vae").exists() else None
        encoder = tokenizer = None
        if (path / "text_encoder").exists():
            from transformers import CLIPTextModel, CLIPTokenizer

            encoder = CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True,
                                                    torch_dtype=torch_dtype)
            tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
        options.setdefault("parameterization", meta.get("parameterization"))
        return Backbone(denoiser, scheduler, vae=vae, text_encoder=encoder, tokenizer=tokenizer, **options)
    if (path / "config.json").exists():
        denoiser = _load_model_dir(path, torch_dtype)
        scheduler_dir = path.parent / "scheduler"
        scheduler = _load_scheduler(scheduler_dir) if scheduler_dir.exists() else _default_scheduler()
        return Backbone(denoiser, scheduler, **options)
    raise ConfigError(
        f"{path}: not a diffusers pipeline (model_index.json), model directory (config.json) "
        "or .safetensors file"
    )


def _load_model_dir(path: Path, torch_dtype):
    config = json.loads((path / "config.json").read_text())
    cls = _class(config["_class_name"])
    return cls.from_pretrained(path, local_files_only=True, use_safetensors=True, torch_dtype=torch_dtype)


def _load_scheduler(path: Path):
    config = json.loads((path / "scheduler_config.json").read_text())
    return _class(config["_class_name"]).from_pretrained(path)


def _default_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler()


def save_single_file(backbone: Backbone, path: str | Path) -> Path:
    """Write the denoiser's weights with its config and the scheduler config as metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    denoiser = backbone.denoiser
    config = dict(denoiser.config)
    config["_class_name"] = type(denoiser).__name__
    sched = dict(backbone.scheduler.config)
    sched["_class_name"] = type(backbone.scheduler).__name__
    state = {k: v.contiguous() for k, v in denoiser.state_dict().items()}
    metadata = {
        SINGLE_FILE_CONFIG_KEY: json.dumps(config, default=list),
        SINGLE_FILE_SCHEDULER_KEY: json.dumps(sched, default=list),
        "difforge_parameterization": backbone.parameterization.name,
        "format": "pt",
    }
    save_file(state, str(path), metadata=metadata)
    return path


def _load_single_file(path: Path, *, torch_dtype=None, **options: Any) -> Backbone:
    state, metadata = read_safetensors(path, what="model")
    if SINGLE_FILE_CONFIG_KEY not in metadata:
        raise ConfigError(
            f"{path}: no {SINGLE_FILE_CONFIG_KEY!r} metadata; save it with "
            "difforge.backbone.save_single_file or load the diffusers directory instead"
        )
    config = json.loads(metadata[SINGLE_FILE_CONFIG_KEY])
    cls = _class(config.pop("_class_name"))
    denoiser = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    denoiser.load_state_dict(state, strict=True)
    if torch_dtype is not None:
        denoiser.to(torch_dtype)
    sched_config = json.loads(metadata.get(SINGLE_FILE_SCHEDULER_KEY, "{}"))
    scheduler_cls = _class(sched_config.pop("_class_name", "DDPMScheduler"))
    scheduler = scheduler_cls.from_config(sched_config)
    options.setdefault("parameterization", metadata.get("difforge_parameterization"))
    return Backbone(denoiser, scheduler, **options)
