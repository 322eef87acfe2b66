"""The ``autoencoder`` objective: train the backbone's VAE, the first stage of a latent diffusion
model (Rombach et al. 2022), on reconstruction.

The loss is ``l1_weight * |x - D(z)| + mse_weight * (x - D(z))^2 + kl_weight * KL(q(z|x) || N(0, I))``
with ``z`` drawn from the posterior by the run's generator: the latent-diffusion autoencoder's
reconstruction and KL terms, without its perceptual and adversarial ones (which need a
pretrained network or a discriminator). Only the VAE trains; the full backbone is saved.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ..errors import ConfigError
from .data import batch_samples
from .objectives import Objective


class AutoencoderOptions(BaseModel):
    """Options of the ``autoencoder`` objective."""

    model_config = ConfigDict(extra="forbid")

    l1_weight: float = Field(1.0, ge=0)
    mse_weight: float = Field(1.0, ge=0)
    kl_weight: float = Field(1e-6, ge=0)


class AutoencoderObjective(Objective):
    """Reconstruction (L1 + MSE) and KL loss of the backbone's ``AutoencoderKL``."""

    name = "autoencoder"
    requires = frozenset({"images"})
    options_model = AutoencoderOptions

    def __init__(self, backbone, **options: Any) -> None:
        super().__init__(backbone, **options)
        if backbone.vae is None:
            raise ConfigError("objective.name: 'autoencoder' trains the model's VAE, and this model has none")

    def trainable_modules(self, config) -> dict[str, nn.Module]:
        """The VAE."""
        if config.adapter is not None:
            raise ConfigError("adapter: the 'autoencoder' objective trains the whole VAE; remove the adapter section")
        return {"vae": self.backbone.vae}

    def loss(self, batch, denoiser, generator):
        vae, o = self.backbone.vae, self.options
        x = batch_samples(batch).to(vae.device, vae.dtype)
        posterior = vae.encode(x).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator, dtype=posterior.mean.dtype)
        recon = vae.decode(posterior.mean + posterior.std * noise.to(posterior.mean.device)).sample
        l1, mse, kl = F.l1_loss(recon, x), F.mse_loss(recon, x), posterior.kl().mean()
        loss = o.l1_weight * l1 + o.mse_weight * mse + o.kl_weight * kl
        return loss, {"l1": l1.detach(), "mse": mse.detach(), "kl": kl.detach()}


__all__ = ["AutoencoderObjective", "AutoencoderOptions"]
