"""difforge-canvas: sampling on canvases other than the model's native image.

- :func:`~difforge_canvas.panorama.sample_panorama`: MultiDiffusion panoramas and StitchDiffusion's
  seamless 360° loop (``difforge panorama``);
- :func:`~difforge_canvas.composite.sample_composite`: Composite Diffusion from a segment layout
  with a prompt per segment (``difforge compose``);
- :mod:`~difforge_canvas.views`: the MultiDiffusion fusion both are built on.

Names load lazily: importing the package imports neither torch nor the model code.
"""

from __future__ import annotations

__all__ = ["Composite", "Layout", "Panorama", "Segment", "read_layout", "sample_composite", "sample_panorama"]


def __getattr__(name: str):
    import importlib

    modules = {"Composite": "composite", "sample_composite": "composite", "Layout": "layout", "Segment": "layout",
               "read_layout": "layout", "Panorama": "panorama", "sample_panorama": "panorama"}
    if name in modules:
        return getattr(importlib.import_module(f"difforge_canvas.{modules[name]}"), name)
    raise AttributeError(f"module 'difforge_canvas' has no attribute {name!r}")
