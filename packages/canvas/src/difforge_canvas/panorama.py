"""Panoramas: MultiDiffusion's sliding windows (Bar-Tal et al. 2023) and StitchDiffusion's
seamless 360° panoramas (Wang et al. 2024, "Customizing 360-Degree Panoramas through
Text-to-Image Diffusion Models").

StitchDiffusion adds, at every step, the *stitch block*: a window made of the panorama's
rightmost and leftmost columns side by side, pre-denoised twice before the ordinary windows and
fused with them, so that the two borders are denoised as neighbours and the panorama closes
into a loop. The reference code keeps a canvas twice the output width, copies its two ends
into its middle before each step and finally crops that middle ("global cropping"); here the
stitch block reads the two ends of the output-width canvas directly, which makes the same
loop without the doubled canvas. Both pre-denoising passes see the same input, so for the
deterministic samplers they are one evaluation counted with weight 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from difforge.plugin_api import UsageError

from .canvas import decode, encode_conditions, native_window, sample_views, to_latent_size
from .views import View, sliding_views

#: StitchDiffusion pre-denoises its stitch block twice per step
STITCH_PASSES = 2


def stitch_views(height: int, width: int, window: tuple[int, int], stride: int,
                 passes: int = STITCH_PASSES) -> list[View]:
    """StitchDiffusion's stitch blocks: for every row of windows, the canvas's rightmost
    ``w // 2`` columns followed by its leftmost ``w - w // 2``, weighted by the ``passes``."""
    h, w = window
    half = w // 2
    columns = torch.cat([torch.arange(width - half, width), torch.arange(0, w - half)])
    tops = sorted({int(view.rows[0]) for view in sliding_views(height, width, window, stride)})
    return [View(torch.arange(top, top + h), columns, weight=float(passes)) for top in tops]


def panorama_views(height: int, width: int, window: tuple[int, int], stride: int, *, stitch: bool) -> list[View]:
    """MultiDiffusion's windows over the canvas, plus the stitch blocks when ``stitch``."""
    views = sliding_views(height, width, window, stride)
    return stitch_views(height, width, window, stride) + views if stitch else views


@dataclass
class Panorama:
    """Sampled panoramas: ``images`` ``(N, 3, H, W)`` in [-1, 1], the ``latents`` they decode
    from, and ``nfe``: denoiser evaluations of native-size windows per panorama."""

    images: Tensor
    latents: Tensor
    nfe: int


@torch.no_grad()
def sample_panorama(backbone, prompts: Sequence[str] | None = None, *, width: int, height: int | None = None,
                    num_samples: int = 1, stitch: bool = True, stride: int | None = None, num_steps: int = 25,
                    sampler: str = "ddim", guidance_scale: float = 1.0, generator: torch.Generator | None = None,
                    wrap_decode: bool = True, **sampler_options) -> Panorama:
    """A ``height x width`` panorama (pixels; height defaults to the model's native size) per
    prompt, or ``num_samples`` of an unconditional model: MultiDiffusion windows of the native
    size every ``stride`` denoiser positions (default a quarter window), with StitchDiffusion's
    stitch block when ``stitch``; decoded as a cylinder when ``wrap_decode``."""
    channels, native_h, native_w = native_window(backbone, "panorama")
    canvas_h = native_h if height is None else to_latent_size(backbone, "panorama", "height", height)
    canvas_w = to_latent_size(backbone, "panorama", "width", width)
    if canvas_w < native_w + native_w // 2 or canvas_h < native_h:
        raise UsageError(f"panorama: the canvas ({canvas_h}x{canvas_w} latent positions) must be at least the "
                         f"model's {native_h}x{native_w} window high and 1.5 windows wide")
    stride = stride or max(1, native_w // 4)
    views = panorama_views(canvas_h, canvas_w, (native_h, native_w), stride, stitch=stitch)
    conditions = encode_conditions(backbone, "panorama", prompts)
    batch = len(conditions) if conditions is not None else num_samples
    latents = sample_views(backbone, views, None if conditions is None else conditions[None],
                           (channels, canvas_h, canvas_w), batch=batch, num_steps=num_steps, sampler=sampler,
                           guidance_scale=guidance_scale, generator=generator, **sampler_options)
    images = decode(backbone, latents, wrap=max(1, native_w // 4) if wrap_decode else 0)
    return Panorama(images=images, latents=latents, nfe=len(views) * num_steps)


def wrap_seam_error(images: Tensor) -> Tensor:
    """Per image, the mean absolute difference between its last and first pixel columns: the
    seam a 360° viewer shows where the panorama closes."""
    return (images[..., -1] - images[..., 0]).abs().flatten(1).mean(1)


def column_step(images: Tensor) -> Tensor:
    """Per image, the mean absolute difference between neighbouring pixel columns inside it:
    the scale a seam error is read against (a seamless loop has a seam error near it)."""
    return (images[..., 1:] - images[..., :-1]).abs().flatten(1).mean(1)
