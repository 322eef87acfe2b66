"""The shapes world's reward and captioner, read off by the analytic scorer."""

from __future__ import annotations

import torch

from difforge.plugin_api import ImageReward


class ShapesAlignment(ImageReward):
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
