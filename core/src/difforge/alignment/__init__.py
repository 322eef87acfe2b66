"""Alignment: preference optimisation and reinforcement learning of diffusion models.

Every method is a registered :class:`~difforge.training.Objective` that runs in the one
training loop and declares what it needs (``preference_pairs``, ``reward``,
``reference_model``, ``on_policy_samples``), so ``difforge train`` validates a config before
any weights load:

- ``diffusion-dpo`` / ``dcpo``: preference pairs, frozen reference (:mod:`.dpo`)
- ``pso``: training images preferred over the model's own few-step samples (:mod:`.pso`)
- ``seppo``: winning images against samples of previous checkpoints, with the anchor-based flipper (:mod:`.seppo`)
- ``d3po``: step-wise DPO on pairs of sampled trajectories with preference labels (:mod:`.d3po`)
- ``ddpo`` / ``rlcm``: on-policy trajectories scored by a reward (:mod:`.ddpo`)
- ``texforce``: DDPO's policy gradient on a LoRA of the text encoder (:mod:`.texforce`)
- ``alignprop``: a differentiable reward backpropagated through the sampling chain (:mod:`.alignprop`)

Preference data are built from a model's own samples or read in the Pick-a-Pic layout
(:mod:`.preferences`).
"""

from .alignprop import AlignPropObjective
from .d3po import D3POObjective
from .ddpo import DDPOObjective, RLCMObjective
from .dpo import DCPOObjective, DiffusionDPOObjective
from .preferences import (
    DualCaptions,
    PreferencePairsDataset,
    build_preference_pairs,
    dual_captions,
    perturb_caption,
    recaption_pairs,
)
from .pso import PSOObjective
from .seppo import SePPOObjective
from .texforce import TexForceObjective

__all__ = ["AlignPropObjective", "D3POObjective", "DCPOObjective",
           "DDPOObjective", "DiffusionDPOObjective", "PSOObjective", "PreferencePairsDataset", "RLCMObjective",
           "SePPOObjective", "TexForceObjective", "build_preference_pairs", "perturb_caption", "recaption_pairs",
           "DualCaptions", "dual_captions"]
