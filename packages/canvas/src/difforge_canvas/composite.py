"""Composite Diffusion (Jamwal & Ramaneswaran 2024, "Composite Diffusion | whole >= Σparts"):
an image composed from a free-form segment layout with a prompt per segment, in two phases.

- **Scaffolding** (the first ``scaffold_fraction`` of the steps): every segment is denoised on
  its own, the canvas outside it replaced by a *scaffolding image* (a plain colour) noised to
  the current level, so each segment forms its content without interference from the others;
  the segments' estimates are composited by their masks.
- **Harmonising** (the remaining steps): every segment's prompt denoises the whole composite,
  the estimates composited by the masks, so the segments see each other and their borders
  blend.

Each phase's composite is the fusion of one full-canvas view per segment weighted by its mask
(:mod:`difforge_canvas.views`), so every registered sampler runs it; a step costs one denoiser
evaluation per segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from difforge.plugin_api import UsageError, schedule_from_scheduler

from .canvas import (
    decode,
    encode_conditions,
    native_window,
    pixels_per_latent,
    plain_colour,
    sample_views,
    to_latent_size,
)
from .layout import Layout, read_layout
from .views import View


@dataclass
class Composite:
    """Composed images ``(N, 3, H, W)`` in [-1, 1], their ``latents``, and ``nfe``: denoiser
    evaluations of the canvas per image (one per segment and step)."""

    images: Tensor
    latents: Tensor
    nfe: int


def latent_masks(masks: Tensor, scale: int) -> Tensor:
    """Pixel masks ``(S, H, W)`` -> the fraction of each denoiser cell in each segment ``(S, h, w)``."""
    return F.avg_pool2d(masks[:, None], scale)[:, 0] if scale > 1 else masks


def _scaffold_latents(backbone, color: str, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    _, height, width = shape
    scale = pixels_per_latent(backbone)
    pixels = plain_colour(color, "composite", "scaffold colour").reshape(1, 3, 1, 1)
    pixels = pixels.expand(1, 3, height * scale, width * scale).to(backbone.device)
    return backbone.encode_images(pixels, generator=generator).to(next(backbone.denoiser.parameters()).dtype)


@torch.no_grad()
def sample_composite(backbone, layout: Layout | str | Path, *, num_samples: int = 1, scaffold_fraction: float = 0.3,
                     scaffold_color: str = "#dcdcdc", num_steps: int = 25, sampler: str = "ddim",
                     guidance_scale: float = 1.0, generator: torch.Generator | None = None,
                     **sampler_options) -> Composite:
    """``num_samples`` images of ``layout`` (a :class:`~difforge_canvas.layout.Layout` or its
    file): the first ``scaffold_fraction`` of the steps scaffolded on ``scaffold_color``, the
    rest harmonised (``scaffold_fraction=0``: harmonising only, a mask-weighted MultiDiffusion)."""
    if not 0 <= scaffold_fraction <= 1:
        raise UsageError(f"composite: scaffold_fraction must be in [0, 1], got {scaffold_fraction}")
    layout = layout if isinstance(layout, Layout) else read_layout(layout)
    channels, _, _ = native_window(backbone, "composite")
    height = to_latent_size(backbone, "composite", "height", layout.size[0])
    width = to_latent_size(backbone, "composite", "width", layout.size[1])
    masks = latent_masks(layout.masks(), pixels_per_latent(backbone)).to(backbone.device)
    rows, columns = torch.arange(height), torch.arange(width)
    views = [View(rows, columns, weight=mask, condition=i) for i, mask in enumerate(masks)]
    conditions = encode_conditions(backbone, "composite", layout.prompts)

    seed = generator.initial_seed() if generator is not None else 0
    scaffold_noise = torch.Generator().manual_seed(seed + 7919)  # apart from the sampler's noise stream
    scaffold = _scaffold_latents(backbone, scaffold_color, (channels, height, width), scaffold_noise)
    schedule = schedule_from_scheduler(backbone.scheduler, num_steps)
    scaffold_steps = round(scaffold_fraction * num_steps)
    last_scaffold_t = schedule.timesteps[scaffold_steps - 1] if scaffold_steps else None
    noised: dict[float, Tensor] = {}
    parameterization = backbone.parameterization

    def scaffolded(view: View, crop: Tensor, timestep: Tensor) -> Tensor:
        t = timestep[0]
        if last_scaffold_t is None or float(t) < float(last_scaffold_t):
            return crop
        if float(t) not in noised:
            noise = torch.randn(scaffold.shape, generator=scaffold_noise).to(scaffold)
            level = parameterization.from_model_timestep(t.reshape(1).to(scaffold.device))
            noised[float(t)] = parameterization.add_noise(scaffold, noise, level)
        inside = view.weight.to(crop)
        return inside * crop + (1 - inside) * noised[float(t)]

    latents = sample_views(backbone, views, conditions[:, None] if conditions is not None else None,
                           (channels, height, width), batch=num_samples, num_steps=num_steps, sampler=sampler,
                           guidance_scale=guidance_scale, generator=generator, prepare=scaffolded, **sampler_options)
    return Composite(images=decode(backbone, latents), latents=latents, nfe=len(views) * num_steps)


def segment_scores(images: Tensor, layout: Layout, reward) -> Tensor:
    """``(N, S)``: each segment's bounding-box crop scored by ``reward`` against its own prompt."""
    scores = []
    for (left, top, right, bottom), prompt in zip(layout.boxes(), layout.prompts, strict=True):
        crops = images[..., top:bottom, left:right]
        scores.append(reward(crops.float(), [prompt] * len(images)).float())
    return torch.stack(scores, 1)


def boundary_step(images: Tensor, layout: Layout) -> Tensor:
    """Per image, the mean absolute difference between horizontally or vertically neighbouring
    pixels that lie in different segments (a hard seam between segments raises it)."""
    owner = layout.masks().argmax(0)
    steps, counts = torch.zeros(len(images)), 0
    for axis in (-1, -2):
        a = images.narrow(axis, 0, images.shape[axis] - 1)
        b = images.narrow(axis, 1, images.shape[axis] - 1)
        crossing = owner.narrow(axis, 0, owner.shape[axis] - 1) != owner.narrow(axis, 1, owner.shape[axis] - 1)
        if bool(crossing.any()):
            steps += ((a - b).abs().mean(1) * crossing).flatten(1).sum(1).cpu()
            counts += int(crossing.sum())
    if counts == 0:
        raise UsageError("composite: the layout has one segment, it has no boundary")
    return steps / counts
