"""MultiDiffusion views (Bar-Tal et al. 2023, "MultiDiffusion: Fusing Diffusion Paths for Controlled
Image Generation"): a canvas larger than the model's native size is denoised as a set of crops,
each by the unchanged model, and the crops' estimates are fused into one canvas estimate by the
closed-form least-squares solution of the paper's Eq. 5, the per-pixel weighted mean.

The fusion is done on the clean-sample estimates ``x0``: every sampler step is affine in
``(x_t, x0)`` with coefficients shared by all pixels, so fusing the ``x0`` of the views and taking
one step equals taking each view's step and fusing the results (exactly, for the deterministic
samplers), and every registered sampler runs a canvas unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class View:
    """One crop of the canvas: the canvas ``rows`` and ``columns`` it reads (long tensors; a
    column list may wrap around the canvas edge), the ``weight`` its estimate gets in the fusion
    (a number, or one per pixel of the view: a soft segment mask), and ``condition``, the index
    of the prompt (or segment) it is denoised with."""

    rows: Tensor
    columns: Tensor
    weight: float | Tensor = 1.0
    condition: int = 0

    @property
    def size(self) -> tuple[int, int]:
        return len(self.rows), len(self.columns)

    def crop(self, canvas: Tensor) -> Tensor:
        """The view's pixels of ``canvas`` ``(..., H, W)``."""
        return canvas.index_select(-2, self.rows.to(canvas.device)).index_select(-1, self.columns.to(canvas.device))


def sliding_views(height: int, width: int, window: tuple[int, int], stride: int) -> list[View]:
    """Windows of ``window = (h, w)`` every ``stride`` pixels over a ``height x width`` canvas, the
    last row and column of windows flush with the canvas edge (MultiDiffusion's panorama views)."""
    h, w = window
    if h > height or w > width:
        raise ValueError(f"a {h}x{w} window does not fit a {height}x{width} canvas")
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")

    def starts(size: int, extent: int) -> list[int]:
        found = list(range(0, size - extent + 1, stride))
        return found if found[-1] == size - extent else [*found, size - extent]

    return [View(torch.arange(top, top + h), torch.arange(left, left + w))
            for top in starts(height, h) for left in starts(width, w)]


def fuse(estimates: Tensor, views: Sequence[View], canvas_shape: Sequence[int]) -> Tensor:
    """The per-pixel weighted mean of the views' estimates on the canvas (MultiDiffusion, Eq. 5).

    ``estimates`` ``(len(views) * B, C, h, w)`` holds the views' crops view by view; returns
    ``(B, C, H, W)``. Every canvas pixel must be covered by a view."""
    *lead, height, width = canvas_shape
    value = estimates.new_zeros((*lead, height * width))
    count = estimates.new_zeros(height * width)
    for view, estimate in zip(views, estimates.chunk(len(views)), strict=True):
        flat = (view.rows[:, None] * width + view.columns[None, :]).reshape(-1).to(estimates.device)
        weight = torch.as_tensor(view.weight, dtype=count.dtype, device=count.device).expand(view.size).reshape(-1)
        value.index_add_(-1, flat, weight * estimate.reshape(*estimate.shape[:-2], -1))
        count.index_add_(0, flat, weight)
    if bool((count == 0).any()):
        raise ValueError("the views leave canvas pixels uncovered")
    return (value / count).reshape(*lead, height, width)


def view_conditions(conditions: Tensor | None, views: Sequence[View], batch: int) -> Tensor | None:
    """The condition rows of the stacked crops of :func:`fused_denoise`: view by view,
    ``conditions[view.condition]`` (``(batch, ...)``, one row per canvas, or ``(1, ...)``, shared
    by all) expanded to the ``batch`` canvases; ``None`` stays ``None`` (an unconditional model)."""
    if conditions is None:
        return None
    return torch.cat([conditions[view.condition].expand(batch, *conditions.shape[2:]) for view in views])


#: ``prepare(view, crop, timestep) -> crop``: what a view's denoiser sees instead of its plain crop
Prepare = Callable[[View, Tensor, Tensor], Tensor]


def fused_denoise(denoise: Callable[[Tensor, Tensor], Tensor], views: Sequence[View],
                  prepare: Prepare | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """``denoise(x, timestep) -> x0`` on whole canvases: every view cropped from ``x`` (and
    passed through ``prepare``, e.g. Composite Diffusion's scaffolding), all crops denoised in
    one batch by ``denoise`` (rows view by view, the canvas batch within each, with the condition
    rows of :func:`view_conditions` bound), the estimates fused (:func:`fuse`)."""
    if len({view.size for view in views}) != 1:
        raise ValueError("the views of one canvas must have one size")

    def denoise_canvas(x: Tensor, timestep: Tensor) -> Tensor:
        crops = [view.crop(x) for view in views]
        if prepare is not None:
            crops = [prepare(view, crop, timestep) for view, crop in zip(views, crops, strict=True)]
        crops = torch.cat(crops)
        return fuse(denoise(crops, timestep.repeat(len(views))), views, x.shape)

    return denoise_canvas
