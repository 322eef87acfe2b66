"""difforge-align: preference optimisation and reinforcement learning of diffusion models.

Every method is an :class:`~difforge.plugin_api.Objective` registered with difforge (through
this package's entry point), so it runs in the one training loop and declares what it needs
(``preference_pairs``, ``reward``, ``reference_model``, ``on_policy_samples``); ``difforge
train`` validates a config before any weights load:

- ``diffusion-dpo`` / ``dcpo``: preference pairs, frozen reference (:mod:`.dpo`)
- ``pso``: training images preferred over the model's own few-step samples (:mod:`.pso`)
- ``seppo``: winning images against samples of previous checkpoints, with the anchor-based flipper (:mod:`.seppo`)
- ``d3po``: step-wise DPO on pairs of sampled trajectories with preference labels (:mod:`.d3po`)
- ``ddpo`` / ``rlcm``: on-policy trajectories scored by a reward (:mod:`.ddpo`)
- ``texforce``: DDPO's policy gradient on a LoRA of the text encoder (:mod:`.texforce`)
- ``alignprop``: a differentiable reward backpropagated through the sampling chain (:mod:`.alignprop`)

Preference pairs are built from a model's own samples (:mod:`.pairs`, ``difforge
preference-pairs``) in the core's pairs contract, which the core's ``preference-pairs`` dataset reads.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module of this package (loaded on first use)
EXPORTS = {
    "DiffusionDPOObjective": "dpo", "DCPOObjective": "dpo", "PSOObjective": "pso", "SePPOObjective": "seppo",
    "D3POObjective": "d3po", "DDPOObjective": "ddpo", "RLCMObjective": "ddpo", "TexForceObjective": "texforce",
    "AlignPropObjective": "alignprop", "build_preference_pairs": "pairs", "preference_pairs": "pairs",
    "perturb_caption": "pairs", "recaption_pairs": "pairs",
    "chosen_images": "pairs", "DualCaptions": "pairs", "dual_captions": "pairs",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module 'difforge_align' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
