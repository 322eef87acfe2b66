"""The Python API behind every CLI command."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .backbone import Backbone, load_backbone
from .config import RunConfig, load_config
from .training import Trainer, TrainResult


def train(config: RunConfig | str | Path | dict[str, Any], overrides: Sequence[str] | None = None,
          **trainer_kwargs: Any) -> TrainResult:
    """Train from a :class:`RunConfig`, a YAML path, or a dict (what ``difforge train`` runs)."""
    if isinstance(config, RunConfig):
        if overrides:
            config = load_config(data=config.model_dump(), overrides=list(overrides))
    elif isinstance(config, dict):
        config = load_config(data=config, overrides=list(overrides or []))
    else:
        config = load_config(config, overrides=list(overrides or []))
    return Trainer(config, **trainer_kwargs).fit()


def load(model: str | Path, adapters: Sequence[tuple[str | Path, float]] = (), **options: Any) -> Backbone:
    """Load a backbone and apply adapters ``[(path, weight), ...]`` (any type difforge saved, or
    diffusers / kohya LoRA files). Text-encoder adapters (e.g. from TexForce) go to the text
    encoder (``backbone.text_encoder_adapters``), the others to the denoiser (``backbone.adapters``)."""
    from .adapters import AdapterSet, adapter_component_of_file

    backbone = load_backbone(model, **options)
    for i, (path, weight) in enumerate(adapters):
        if adapter_component_of_file(path) == "text_encoder":
            if backbone.text_encoder is None:
                raise ValueError(f"{path}: a text-encoder adapter, but the model has no text encoder")
            if getattr(backbone, "text_encoder_adapters", None) is None:
                backbone.text_encoder_adapters = AdapterSet(backbone.text_encoder)
            backbone.text_encoder_adapters.load(path, name=f"adapter_{i}", weight=weight)
        else:
            if getattr(backbone, "adapters", None) is None:
                backbone.adapters = AdapterSet(backbone.denoiser)
            backbone.adapters.load(path, name=f"adapter_{i}", weight=weight)
    return backbone


def sample(
    model: str | Path | Backbone,
    prompts: Sequence[str] | None = None,
    *,
    adapters: Sequence[tuple[str | Path, float]] = (),
    num_samples: int = 4,
    num_steps: int = 25,
    sampler: str = "ddim",
    guidance_scale: float = 1.0,
    seed: int = 0,
    out: str | Path | None = None,
) -> torch.Tensor | Path:
    """Sample a model; returns images in [-1, 1], or the PNG grid path when ``out`` is given."""
    from .sampling.grid import save_grid

    backbone = model if isinstance(model, Backbone) else load(model, adapters)
    backbone.eval()
    images = backbone.sample(
        list(prompts) if prompts else None,
        num_samples=num_samples,
        num_steps=num_steps,
        sampler=sampler,
        guidance_scale=guidance_scale,
        generator=torch.Generator().manual_seed(seed),
    )
    return save_grid(images, out) if out is not None else images


def freeze_guard(model: str | Path, protected: str | Path, legal: str | Path, out: str | Path | None = None,
                 ratio: float = 0.3, steps: int = 30, user_steps: int = 5, protected_caption: str | None = None,
                 legal_caption: str | None = None, resolution: int = 32, batch_size: int = 4, seed: int = 0):
    """Learn a FreezeAsGuard mask for ``model`` from two image folders (what ``difforge
    freeze-guard`` runs); writes it to ``out`` when given and returns the :class:`FreezeMask`."""
    from .plugins import get_registry
    from .training.freeze_guard import learn_freeze_mask

    backbone = load_backbone(model)
    dataset_cls = get_registry("datasets").get("image-folder")

    def batches(folder, caption, offset):
        dataset = dataset_cls(path=str(folder), resolution=resolution, caption=caption)
        g = torch.Generator().manual_seed(seed + offset)
        while True:
            idx = torch.randint(0, len(dataset), (batch_size,), generator=g).tolist()
            items = [dataset[i] for i in idx]
            yield {"pixel_values": torch.stack([it["pixel_values"] for it in items]),
                   "caption": [it["caption"] for it in items]}

    mask = learn_freeze_mask(backbone, batches(protected, protected_caption, 0), batches(legal, legal_caption, 1),
                             ratio=ratio, steps=steps, user_steps=user_steps, seed=seed)
    if out is not None:
        mask.save(out)
    return mask


def preference_pairs(model: str | Path, prompts: Sequence[str], reward: str, out: str | Path, *,
                     samples_per_prompt: int = 4, num_steps: int = 25, guidance_scale: float = 4.0, seed: int = 0,
                     perturb: str | None = None, word_groups: Sequence[Sequence[str]] = (),
                     captioner: str | None = None) -> Path:
    """Build pairwise preference data from ``model``'s own samples ranked by the registered
    ``reward`` (what ``difforge preference-pairs`` runs). Each pair can also get DCPO's two
    captions, by one of its three strategies: ``perturb`` (``weak`` / ``medium`` / ``strong``)
    swaps words of the prompt within ``word_groups`` for the rejected image; ``captioner`` (a
    registered captioner) describes each image; both together perturb the rejected image's
    description (DCPO's hybrid). Returns the ``pairs.jsonl`` path."""
    from .alignment import build_preference_pairs, dual_captions
    from .plugins import get_registry

    scorer = get_registry("rewards").get(reward)
    describe = get_registry("captioners").get(captioner) if captioner is not None else None
    captions = dual_captions(perturb=perturb, word_groups=word_groups, describe=describe)
    return build_preference_pairs(load_backbone(model), list(prompts), scorer, out,
                                  samples_per_prompt=samples_per_prompt, num_steps=num_steps,
                                  guidance_scale=guidance_scale, seed=seed, captions=captions)
