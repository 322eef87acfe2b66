"""difforge-distill: few-step distillation objectives for difforge's training loop. ``lcm``:
latent consistency distillation (Luo et al. 2023) of a classifier-free-guided text-to-image
model into a student that samples in 1-8 consistency steps with the guidance scale as input."""

from __future__ import annotations

__version__ = "0.1.0"
