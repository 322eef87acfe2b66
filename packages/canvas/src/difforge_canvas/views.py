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


class FusionPlan:
    """Where each view's pixels land on a ``height x width`` canvas and the weight they carry, with
    the per-pixel weight sums: what :func:`fuse` needs that does not depend on the estimates, so a
    sampler computes it once, not at every step. Refuses views that leave pixels uncovered."""

    def __init__(self, views: Sequence[View], height: int, width: int, device=None,
                 dtype: torch.dtype = torch.float32) -> None:
        self.height, self.width = height, width
        self.indices = [(view.rows[:, None] * width + view.columns[None, :]).reshape(-1).to(device) for view in views]
        self.weights = [torch.as_tensor(view.weight, dtype=dtype, device=device).expand(view.size).reshape(-1)
                        for view in views]
        self.count = torch.zeros(height * width, dtype=dtype, device=device)
        for index, weight in zip(self.indices, self.weights, strict=True):
            self.count.index_add_(0, index, weight)
        if bool((self.count == 0).any()):
            raise ValueError("the views leave canvas pixels uncovered")

    def fuse(self, estimates: Tensor) -> Tensor:
        """``(V * B, C, h, w)`` view by view -> the canvas ``(B, C, H, W)``."""
        value = None
        for index, weight, estimate in zip(self.indices, self.weights, estimates.chunk(len(self.indices)),
                                           strict=True):
            flat = weight.to(estimate.dtype) * estimate.reshape(*estimate.shape[:-2], -1)
            if value is None:
                value = estimate.new_zeros((*flat.shape[:-1], self.height * self.width))
            value.index_add_(-1, index, flat)
        return (value / self.count.to(value.dtype)).reshape(*value.shape[:-1], self.height, self.width)


def fuse(estimates: Tensor, views: Sequence[View], canvas_shape: Sequence[int]) -> Tensor:
    """The per-pixel weighted mean of the views' estimates on the canvas (MultiDiffusion, Eq. 5).

    ``estimates`` ``(len(views) * B, C, h, w)`` holds the views' crops view by view; returns
    ``(B, C, H, W)``. Every canvas pixel must be covered by a view."""
    *_, height, width = canvas_shape
    return FusionPlan(views, height, width, estimates.device, estimates.dtype).fuse(estimates)


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
    plans: dict[tuple, FusionPlan] = {}

    def denoise_canvas(x: Tensor, timestep: Tensor) -> Tensor:
        key = (*x.shape[-2:], x.device, x.dtype)
        if key not in plans:
            plans[key] = FusionPlan(views, *x.shape[-2:], x.device, x.dtype)
        crops = [view.crop(x) for view in views]
        if prepare is not None:
            crops = [prepare(view, crop, timestep) for view, crop in zip(views, crops, strict=True)]
        return plans[key].fuse(denoise(torch.cat(crops), timestep.repeat(len(views))))

    return denoise_canvas
