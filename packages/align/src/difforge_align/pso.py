"""PSO (pairwise sample optimisation, Miao et al. 2024): fine-tune a few-step / timestep-
distilled model towards training images without losing its few-step sampling.

Each training image is paired with a *reference image* the model samples itself with its
few-step sampler for the same caption, and the Diffusion-DPO loss raises the likelihood margin
of the training image over the reference image relative to the frozen initial model. Online
(``online: true``) the reference images come from the current model at every step; offline they
are sampled once from the initial model before training.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from difforge.plugin_api import batch_samples

from .dpo import DiffusionDPOObjective


class PSOOptions(BaseModel):
    """Options of the ``pso`` objective."""

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(2000.0, gt=0)
    online: bool = Field(True, description="sample the reference images from the current model at every step")
    num_steps: int = Field(4, ge=1, description="steps of the model's few-step sampler")
    sampler: str = Field("consistency", description="a registered sampler (consistency, ddim, ...)")
    guidance_scale: float = Field(1.0, ge=1)


class PSOObjective(DiffusionDPOObjective):
    """Diffusion-DPO with the training image preferred over the model's own few-step sample."""

    name = "pso"
    requires = frozenset({"images", "captions", "reference_model", "on_policy_samples"})
    options_model = PSOOptions

    def setup(self, context) -> None:
        """The frozen reference, and (offline) the reference images of the whole dataset."""
        super().setup(context)
        self.samples_used = 0
        self.offline: dict[str, torch.Tensor] = {}
        if not self.options.online:
            generator = torch.Generator().manual_seed(context.seed + 29)
            captions = sorted({context.dataset[i]["caption"] for i in range(len(context.dataset))})
            for caption in captions:
                self.offline[caption] = self.reference_samples([caption], context.backbone.denoiser, generator)[0]
            self.samples_used = len(captions)

    def state_dict(self) -> dict[str, Any]:
        """The count of generated samples (the rest of the run's state is the trainer's)."""
        return {"samples_used": self.samples_used}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the sample count of :meth:`state_dict`."""
        self.samples_used = int(state["samples_used"])

    def model_inputs(self, batch: int) -> dict[str, torch.Tensor]:
        """For a model that embeds the guidance scale (an LCM), the scale it samples with: the
        likelihood margin is that of the few-step model as it is used."""
        return self.backbone.guidance_inputs(self.options.guidance_scale, batch)

    @torch.no_grad()
    def reference_samples(self, captions: list[str], denoiser: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """Latents the model samples for ``captions`` with its few-step sampler."""
        o = self.options
        was_training = denoiser.training
        denoiser.eval()
        try:
            return self.backbone.sample(captions, num_steps=o.num_steps, sampler=o.sampler,
                                        guidance_scale=o.guidance_scale, generator=generator, decode=False)
        finally:
            denoiser.train(was_training)

    def loss(self, batch: dict[str, Any], denoiser: nn.Module, generator: torch.Generator):
        bb = self.backbone
        captions = list(batch["caption"])
        x_w = bb.encode_images(batch_samples(batch).to(bb.device), generator=generator)
        if self.options.online:
            x_l = self.reference_samples(captions, bb.denoiser, generator)
            self.samples_used += len(captions)
        else:
            x_l = torch.stack([self.offline[c] for c in captions])
        cond = bb.encode_prompts(captions)
        return self.preference_loss(x_w, x_l.to(x_w), cond, cond, denoiser, generator)
