"""Diffusion-DPO (Wallace et al. 2023) and DCPO (dual-caption preference optimisation).

Diffusion-DPO replaces DPO's log-likelihoods by the denoising ELBO: with the same noise ε and
timestep t for the chosen image x^w and the rejected image x^l,

    L = -log σ(-β/2 · [(‖ε − ε_θ(x^w_t)‖² − ‖ε − ε_ref(x^w_t)‖²) − (‖ε − ε_θ(x^l_t)‖² − ‖ε − ε_ref(x^l_t)‖²)])

so the model lowers its denoising error on chosen images relative to the frozen reference more
than on rejected ones. (The errors are per-pixel means, as in the authors' code, with ω(λ_t)=1
and the factor T folded into β.) DCPO conditions the chosen image on its caption and the
rejected image on a different caption that describes it, so the rejected branch no longer sees
a prompt that is irrelevant to its image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from difforge.plugin_api import DataError, Objective, batch_samples, dataset_attribute


class DiffusionDPOOptions(BaseModel):
    """Options of the ``diffusion-dpo`` and ``dcpo`` objectives."""

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(5000.0, gt=0, description="DPO's β (the paper uses 2000-5000 with per-pixel errors)")


class DiffusionDPOObjective(Objective):
    """DPO on the denoising ELBO of chosen vs rejected images against a frozen reference (the
    base model with the adapters disabled)."""

    name = "diffusion-dpo"
    requires = frozenset({"preference_pairs", "reference_model"})
    options_model = DiffusionDPOOptions

    def setup(self, context) -> None:
        """Set up the reference: the adapters switched off, or a frozen copy for full fine-tuning."""
        self.reference = context.reference_model()

    def model_inputs(self, batch: int) -> dict[str, Tensor]:
        """Extra model inputs of the denoising errors (none; PSO gives a guidance-embedding model its scale)."""
        return {}

    def conditions(self, batch: dict[str, Any]) -> tuple[Any, Any]:
        """Conditioning of the chosen and the rejected images: the shared caption."""
        cond = self.backbone.encode_prompts(list(batch["caption"]))
        return cond, cond

    def loss(self, batch: dict[str, Any], denoiser: nn.Module, generator: torch.Generator):
        bb = self.backbone
        x_w = bb.encode_images(batch_samples(batch, "chosen").to(bb.device), generator=generator)
        x_l = bb.encode_images(batch_samples(batch, "rejected").to(bb.device), generator=generator)
        cond_w, cond_l = self.conditions(batch)
        return self.preference_loss(x_w, x_l, cond_w, cond_l, denoiser, generator)

    def preference_loss(self, x_w: Tensor, x_l: Tensor, cond_w: Any, cond_l: Any, denoiser: nn.Module,
                        generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        """The Diffusion-DPO loss of preferred latents ``x_w`` over ``x_l`` (same noise and t)."""
        if not hasattr(self, "reference"):
            raise RuntimeError(f"{self.name}: setup() was not called (the Trainer calls it)")
        bb, param = self.backbone, self.backbone.parameterization
        n = x_w.shape[0]
        noise = torch.randn(x_w.shape, generator=generator, dtype=x_w.dtype).to(bb.device)
        t = param.sample_timesteps(n, generator, bb.device)
        x0, noise2, t2 = torch.cat([x_w, x_l]), torch.cat([noise, noise]), torch.cat([t, t])
        x_t = param.add_noise(x0, noise2, t2)
        cond = torch.cat([cond_w, cond_l])
        target = param.target(x0, noise2, t2).float()

        inputs = self.model_inputs(2 * n)

        def errors(model: nn.Module) -> Tensor:
            out = bb.predict(x_t, t2, cond, denoiser=model, extra=inputs)
            return F.mse_loss(out.float(), target, reduction="none").flatten(1).mean(1)

        model_err = errors(denoiser)
        with self.reference.active() as reference:
            ref_err = errors(reference)
        model_diff = model_err[:n] - model_err[n:]
        ref_diff = ref_err[:n] - ref_err[n:]
        inside = -0.5 * self.options.beta * (model_diff - ref_diff)
        loss = -F.logsigmoid(inside).mean()
        return loss, {"loss": loss.detach(), "implicit_accuracy": (inside > 0).float().mean().detach(),
                      "chosen_error": model_err[:n].mean().detach(), "rejected_error": model_err[n:].mean().detach()}


class DCPOObjective(DiffusionDPOObjective):
    """Dual-caption DPO: the chosen image is conditioned on ``caption_chosen`` and the rejected
    image on its own ``caption_rejected`` (from a captioner or by perturbing the prompt)."""

    name = "dcpo"

    def setup(self, context) -> None:
        """Refuse preference data without each rejected image's own caption before training: with
        the shared caption in its place DCPO would silently be Diffusion-DPO."""
        missing = dataset_attribute(context.dataset, "pairs_without_rejected_caption")
        if missing:
            file = dataset_attribute(context.dataset, "file", "the preference data")
            total = len(context.dataset)
            raise DataError(f"{file}: {missing} of {total} pairs have no caption_rejected; dcpo conditions each "
                            "rejected image on its own caption (make them with difforge-align's caption "
                            "strategies, or train diffusion-dpo)")
        super().setup(context)

    def conditions(self, batch: dict[str, Any]) -> tuple[Any, Any]:
        """The chosen and the rejected image's own captions."""
        if "caption_rejected" not in batch:
            raise DataError("dcpo: the preference data has no caption_rejected (build it with a caption strategy)")
        return (self.backbone.encode_prompts(list(batch["caption_chosen"])),
                self.backbone.encode_prompts(list(batch["caption_rejected"])))
