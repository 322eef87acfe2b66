"""Registers the shapes world with difforge."""

from __future__ import annotations

import torch

from difforge import hookimpl
from difforge.rewards import Reward


class ShapesAlignment(Reward):
    """Prompt alignment in [0, 1] measured by the analytic shapes-world scorer: the fraction of
    asked-for attributes (colour, shape, position, size) that the image satisfies, penalising
    extra objects. Not differentiable."""

    name = "shapes-alignment"
    needs_prompts = True

    def score(self, images, prompts=None):
        from .scorer import alignment

        return torch.tensor([alignment(image, prompt)["reward"] for image, prompt in zip(images, prompts, strict=True)])


class ShapesCaptioner:
    """Captions shapes-world images by what the analytic scorer detects, in the generator's
    grammar ("a blue circle on the left and a red triangle on the right"); the captioner of
    DCPO's captioning strategy on the shapes world."""

    def __call__(self, images) -> list[str]:
        from .scorer import describe

        return [describe(image) for image in images]


@hookimpl
def difforge_register_captioners():
    return {"shapes-captioner": ShapesCaptioner()}


@hookimpl
def difforge_register_datasets():
    from .data import ShapesDataset

    return {"shapes": ShapesDataset}


@hookimpl
def difforge_register_rewards():
    return {"shapes-alignment": ShapesAlignment()}


@hookimpl
def difforge_resolve_model(reference):
    from .models import MODELS, MODELS_DIR

    path = MODELS_DIR / reference
    return str(path) if reference in MODELS and (path / "model_index.json").exists() else None


@hookimpl
def difforge_register_commands():
    from difforge.cli import Command

    from . import quickstart

    return {"quickstart": Command("teach shapes-sd-tiny a new concept with DreamBooth + LoRA, "
                                  "and measure it before/after", quickstart.configure, quickstart.run)}
