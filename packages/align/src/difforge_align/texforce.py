"""TexForce (Chen et al. 2024): reinforcement learning on the *text encoder* through LoRA.

The policy is the same denoising MDP as DDPO's, sampled with stochastic DDIM, and the update
is the same PPO-clipped policy gradient with per-prompt advantages. What is trained differs:
a LoRA on the text encoder (``adapter.component: text_encoder``), while the denoiser stays
frozen. The log-probability of a step depends on the trained weights only through the prompt
embedding, so every training pass re-encodes the prompts (and the empty prompt of
classifier-free guidance) with gradients.

The tuned text encoder is an ordinary text-encoder LoRA file (diffusers layout, keys
``text_encoder.…``); it loads beside an independently tuned denoiser adapter, e.g.
``difforge.load(model, adapters=[(unet_lora, 1.0), (texforce_lora, 1.0)])``.
"""

from __future__ import annotations

from typing import Any

import torch

from .ddpo import DDPOObjective
from .policy import Trajectories


class TexForceObjective(DDPOObjective):
    """DDPO's policy gradient with the trained parameters in the text encoder (options: DDPO's)."""

    name = "texforce"
    requires = frozenset({"captions", "reward", "on_policy_samples", "text_encoder_adapter"})

    def conditioning(self, traj: Trajectories, index: torch.Tensor) -> tuple[Any, Any]:
        """The prompts (and the empty prompt of guidance) re-encoded by the current text encoder."""
        bb = self.backbone
        cond = bb.encode_prompts([traj.prompts[i] for i in index.tolist()])
        return cond, bb.null_condition(len(index)) if traj.null is not None else None
