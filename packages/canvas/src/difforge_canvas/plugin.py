"""Registers the canvas commands with difforge (their modules are imported only when chosen)."""

from __future__ import annotations

from difforge.plugin_api import Command, hookimpl


@hookimpl
def difforge_register_commands():
    return {
        "panorama": Command("sample 360-degree panoramas (MultiDiffusion windows, StitchDiffusion stitch block)",
                            "difforge_canvas.cli:configure_panorama", "difforge_canvas.cli:run_panorama"),
        "compose": Command("sample an image from a segment layout, a prompt per segment (Composite Diffusion)",
                           "difforge_canvas.cli:configure_compose", "difforge_canvas.cli:run_compose"),
        "highres": Command("sample above the model's native size (DiffuseHigh structure guidance, entropy-scaled "
                           "attention)", "difforge_canvas.cli:configure_highres", "difforge_canvas.cli:run_highres"),
        "cow": Command("sample images that keep a given image patch while the prompt sets the rest (Cyclic One-Way "
                       "Diffusion)", "difforge_canvas.cli:configure_cow", "difforge_canvas.cli:run_cow"),
    }
