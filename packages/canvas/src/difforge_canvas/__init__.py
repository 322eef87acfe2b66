"""difforge-canvas: sampling on canvases other than the model's native image.

- :func:`~difforge_canvas.panorama.sample_panorama`: MultiDiffusion panoramas and StitchDiffusion's
  seamless 360° loop (``difforge panorama``);
- :func:`~difforge_canvas.composite.sample_composite`: Composite Diffusion from a segment layout
  with a prompt per segment (``difforge compose``);
- :func:`~difforge_canvas.highres.sample_high_resolution`: DiffuseHigh and entropy-scaled attention
  above the native size (``difforge highres``);
- :func:`~difforge_canvas.cow.sample_cow`: Cyclic One-Way Diffusion, an image patch kept in its
  region while the prompt sets the rest (``difforge cow``);
- :mod:`~difforge_canvas.views`: the MultiDiffusion fusion panoramas and layouts are built on.

Names load lazily: importing the package imports neither torch nor the model code.
"""

from __future__ import annotations

__all__ = ["COW", "Composite", "HighResolution", "Layout", "Panorama", "Segment", "entropy_scaled_attention",
           "read_layout", "sample_composite", "sample_cow", "sample_high_resolution", "sample_panorama"]


def __getattr__(name: str):
    import importlib

    modules = {"COW": "cow", "sample_cow": "cow", "Composite": "composite", "sample_composite": "composite",
               "Layout": "layout", "Segment": "layout",
               "read_layout": "layout", "Panorama": "panorama", "sample_panorama": "panorama",
               "HighResolution": "highres", "sample_high_resolution": "highres", "entropy_scaled_attention": "highres"}
    if name in modules:
        return getattr(importlib.import_module(f"difforge_canvas.{modules[name]}"), name)
    raise AttributeError(f"module 'difforge_canvas' has no attribute {name!r}")
