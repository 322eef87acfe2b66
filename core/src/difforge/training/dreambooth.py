"""DreamBooth (Ruiz et al. 2023): bind a rare identifier to a subject shown in a few images,
with the autogenous class-specific prior preservation loss.

The instance data is the run's dataset, captioned with the instance prompt (e.g. "a sks dog").
Before training, the frozen base model generates ``num_class_images`` images for the class
prompt (e.g. "a dog"); every step then adds, for a batch of those class images, the denoising
loss weighted by ``prior_loss_weight``, which keeps the class's prior from drifting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from .data import batch_samples
from .objectives import DenoisingObjective


class DreamBoothOptions(BaseModel):
    """Options of the ``dreambooth`` objective."""

    model_config = ConfigDict(extra="forbid")

    class_prompt: str
    class_data_dir: str | None = Field(None, description="default: <output.dir>/class_images")
    num_class_images: int = Field(50, ge=1)
    prior_loss_weight: float = Field(1.0, ge=0)
    class_sampling_steps: int = Field(25, ge=1)
    class_guidance_scale: float = Field(4.0, ge=0)
    class_batch_size: int | None = Field(None, ge=1, description="default: data.batch_size")
    caption_dropout: float | None = None
    noise_offset: float = 0.0


class DreamBoothObjective(DenoisingObjective):
    """Instance denoising loss + ``prior_loss_weight`` x class denoising loss."""

    name = "dreambooth"
    requires = frozenset({"images", "captions", "class_images"})
    options_model = DreamBoothOptions

    def __init__(self, backbone, default_caption_dropout: float = 0.0, **options: Any) -> None:
        self.db = DreamBoothOptions(**options)
        super().__init__(backbone, default_caption_dropout, caption_dropout=self.db.caption_dropout,
                         noise_offset=self.db.noise_offset)
        self.class_pixels: torch.Tensor | None = None

    def setup(self, context) -> None:
        """Generate (or reuse) the class images with the model as it is before training."""
        from PIL import Image

        from ..sampling.grid import to_uint8
        from .data import read_image

        folder = Path(self.db.class_data_dir or Path(context.config.output.dir) / "class_images")
        resolution = batch_samples(context.dataset[0]).shape[-1]
        existing = sorted(folder.glob("*.png"))
        missing = self.db.num_class_images - len(existing)
        if missing > 0 and context.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            generator = torch.Generator().manual_seed(context.seed + 17)
            model = context.backbone
            was_training = model.denoiser.training
            model.denoiser.eval()
            with torch.no_grad():
                for start in range(0, missing, 16):
                    n = min(16, missing - start)
                    images = model.sample([self.db.class_prompt] * n, num_steps=self.db.class_sampling_steps,
                                          guidance_scale=self.db.class_guidance_scale, generator=generator)
                    for j, array in enumerate(to_uint8(images)):
                        Image.fromarray(array).save(folder / f"class_{len(existing) + start + j:05d}.png")
            model.denoiser.train(was_training)
        context.wait_for_everyone()
        files = sorted(folder.glob("*.png"))[: self.db.num_class_images]
        self.class_pixels = torch.stack([read_image(f, resolution) for f in files])
        self.class_batch = self.db.class_batch_size or context.config.data.batch_size

    def loss(self, batch: dict[str, Any], denoiser: nn.Module, generator: torch.Generator):
        if self.class_pixels is None:
            raise RuntimeError("dreambooth: setup() was not called (the Trainer calls it)")
        samples = batch_samples(batch)
        n = len(samples)
        pick = torch.randint(0, len(self.class_pixels), (self.class_batch,), generator=generator)
        joint = {
            "sample": torch.cat([samples, self.class_pixels[pick]]),
            "caption": list(batch["caption"]) + [self.db.class_prompt] * self.class_batch,
        }
        per_sample = self.per_sample_loss(joint, denoiser, generator)
        instance, prior = per_sample[:n].mean(), per_sample[n:].mean()
        loss = instance + self.db.prior_loss_weight * prior
        return loss, {"loss": loss.detach(), "instance_loss": instance.detach(), "prior_loss": prior.detach()}
