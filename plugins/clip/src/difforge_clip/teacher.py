"""The teacher's own score: the text-to-image model as a diffusion classifier (Li et al. 2023,
"Your Diffusion Model is Secretly a Zero-Shot Classifier"; Krojer et al. 2023 on Winoground).

``score(image, caption) = -E_{t, eps} || eps_theta(x_t, t, c) - eps ||^2`` estimated with the
same ``num_noise`` (t, eps) draws for every pair of a call ("shared noise"), so differences
between captions are not noise. This is the ceiling SDS-CLIP distils towards.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from difforge.plugin_api import Backbone

from .student import pixels


class DiffusionClassifier:
    """Scores image–caption pairs with a text-conditioned :class:`~difforge.Backbone`.

    With ``relative`` (the default) an image's error with the empty caption is subtracted, as
    DiffusionITM (Krojer et al. 2023) does: the raw error mostly measures how hard an image is to
    denoise, which decides Winoground's *image* score (two images, one caption) by itself.
    """

    def __init__(self, backbone: Backbone, num_noise: int = 32, seed: int = 0, batch_size: int = 512,
                 relative: bool = True) -> None:
        self.backbone = backbone
        self.relative = relative
        self.num_noise = num_noise
        self.seed = seed
        self.batch_size = batch_size

    @torch.no_grad()
    def _errors(self, latents: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Mean denoising error of each latent with its condition, over the shared draws."""
        bb = self.backbone
        param = bb.parameterization
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn((self.num_noise, *latents.shape[1:]), generator=generator)
        # stratified timesteps: one per equal-probability bin, the same for every pair
        u = (torch.arange(self.num_noise) + torch.rand(self.num_noise, generator=generator)) / self.num_noise
        if param.continuous:
            t = u.clamp(1e-4, 1.0)
        else:
            t = (u * param.num_train_timesteps).long().clamp(0, param.num_train_timesteps - 1)
        errors = []
        for start in range(0, len(latents), max(1, self.batch_size // self.num_noise)):
            x0 = latents[start:start + max(1, self.batch_size // self.num_noise)]
            cond = conditions[start:start + len(x0)]
            n = len(x0)
            x0r = x0.repeat_interleave(self.num_noise, 0)
            eps = noise.repeat(n, 1, 1, 1).to(x0r)
            tt = t.repeat(n).to(bb.device)
            x_t = param.add_noise(x0r, eps, tt)
            out = bb.predict(x_t, tt, cond.repeat_interleave(self.num_noise, 0))
            target = param.target(x0r, eps, tt)
            errors.append((out.float() - target.float()).pow(2).flatten(1).mean(1).view(n, self.num_noise).mean(1))
        return torch.cat(errors)

    @torch.no_grad()
    def option_scores(self, images: Sequence[np.ndarray], options: Sequence[Sequence[str]]) -> np.ndarray:
        """``scores[n, k]`` = minus the denoising error of image ``n`` with its caption option ``k``."""
        bb = self.backbone
        width = len(options[0])
        latents = torch.cat([bb.vae.encode(pixels(images[i:i + 256]).to(bb.device)).latent_dist.mean
                             for i in range(0, len(images), 256)]) * bb.latent_scale
        flat = [t for opts in options for t in opts]
        if self.relative:
            width += 1
            flat = [t for opts in options for t in ("", *opts)]
        unique = list(dict.fromkeys(flat))
        embeds = torch.cat([bb.encode_prompts(unique[i:i + 256]) for i in range(0, len(unique), 256)])
        conditions = embeds[torch.tensor([unique.index(t) for t in flat])]
        errors = self._errors(latents.repeat_interleave(width, 0), conditions)
        errors = errors.view(len(images), width)
        if self.relative:
            errors = errors[:, 1:] - errors[:, :1]
        return -errors.cpu().numpy()


__all__ = ["DiffusionClassifier"]
