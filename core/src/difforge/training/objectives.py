"""Training objectives: what loss a batch produces. Each declares what it needs, so a config
can be checked before any weights load."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from ..backbone import Backbone
from ..errors import ConfigError, TrainingError
from .data import batch_samples


class Objective(ABC):
    """A loss over batches. ``requires`` names what it needs: ``images``, ``captions``,
    ``preference_pairs``, ``reward``, ``reference_model``, ``on_policy_samples``."""

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    options_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, backbone: Backbone, **options: Any) -> None:
        self.backbone = backbone
        self.options = self.options_model(**options) if self.options_model else None

    def trainable_modules(self, config) -> dict[str, nn.Module]:
        """The modules this objective trains, by name: their parameters (or the run's adapter
        on them) are what the loop optimises, prepares for distributed training and
        checkpoints. The default is the adapter's ``component`` (the denoiser or the text
        encoder), or the whole denoiser when no adapter is configured; an objective that trains
        something else (a ControlNet, a text encoder jointly with the denoiser) overrides it."""
        if config.adapter is not None and config.adapter.component == "text_encoder":
            return {"text_encoder": self.backbone.text_encoder}
        return {"denoiser": self.backbone.denoiser}

    def setup(self, context) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Called once before the first step with the run's
        :class:`~difforge.training.context.TrainingContext` (e.g. to prepare auxiliary data or
        the reference model). Anything it creates must be deterministic, so that a resumed run
        sees the same."""

    def save_trained(self, output_dir: Path, name: str = "model") -> Path:
        """Save what a full (adapter-less) run trained under ``<output_dir>/<name>`` and return
        where (``model_ema`` for the EMA weights): by default the whole backbone in diffusers layout."""
        path = Path(output_dir) / name
        self.backbone.save_pretrained(path)
        return path

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs beyond the trained weights and the RNGs: for an on-policy
        objective its current sampling round, for SePPO its reference history. Values are
        tensors (stored as safetensors) or JSON data; the trainer writes them into every
        checkpoint and hands them back to :meth:`load_state_dict` on resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (called after :meth:`setup`)."""
        if state:
            raise TrainingError(f"objective {self.name}: the checkpoint holds objective state "
                                f"({', '.join(sorted(state))}) that this objective does not keep")

    @abstractmethod
    def loss(self, batch: dict[str, Any], denoiser: nn.Module,
             generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss of one batch and values to log. ``denoiser`` is the (possibly
        wrapped) trainable model; randomness comes from ``generator`` only."""


class DenoisingOptions(BaseModel):
    """Options of the ``denoising`` objective."""

    model_config = ConfigDict(extra="forbid")

    caption_dropout: float | None = None
    noise_offset: float = 0.0
    train_text_encoder: bool = False


class DenoisingObjective(Objective):
    """The diffusion loss of the backbone's parameterisation (eps, v, x0 or flow), weighted
    uniformly or by min-SNR-γ. Captions are dropped to ``""`` with ``caption_dropout`` for
    classifier-free guidance."""

    name = "denoising"
    requires = frozenset({"images"})
    options_model = DenoisingOptions

    def __init__(self, backbone: Backbone, default_caption_dropout: float = 0.0, **options: Any) -> None:
        """``default_caption_dropout`` is the run's ``data.caption_dropout``; the
        ``caption_dropout`` option overrides it."""
        self.backbone = backbone
        self.options = DenoisingOptions(**options)
        self.caption_dropout = (
            self.options.caption_dropout if self.options.caption_dropout is not None else default_caption_dropout
        )

    def condition(self, batch: dict[str, Any], generator: torch.Generator) -> Any:
        """The denoiser's conditioning for a batch: text embeddings of ``caption``, ``class_labels``,
        the ``condition`` vectors (e.g. observations), or None."""
        kind = self.backbone.conditioning
        if kind == "text":
            captions = list(batch.get("caption") or [""] * len(batch_samples(batch)))
            if self.caption_dropout > 0:
                drop = torch.rand(len(captions), generator=generator) < self.caption_dropout
                captions = ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]
            return self.backbone.encode_prompts(captions)
        if kind == "class":
            return batch["class_labels"].to(self.backbone.device)
        if kind == "vector":
            return batch["condition"].to(self.backbone.device)
        return None

    def trainable_modules(self, config) -> dict[str, nn.Module]:
        """The default, or with ``train_text_encoder`` the denoiser and the text encoder jointly
        (full training from scratch, as a text-to-X model's own encoder is trained)."""
        if not getattr(self.options, "train_text_encoder", False):
            return super().trainable_modules(config)
        if config.adapter is not None:
            raise ConfigError("objective.options.train_text_encoder: trains the denoiser and the text encoder "
                              "whole; remove the adapter section (or put the adapter on one of them)")
        if self.backbone.text_encoder is None:
            raise ConfigError("objective.options.train_text_encoder: this model has no text encoder")
        return {"denoiser": self.backbone.denoiser, "text_encoder": self.backbone.text_encoder}

    def extra_inputs(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        """Further model inputs of a batch (see :meth:`difforge.Backbone.predict`): by default
        the batch items whose keys the denoiser or its adapters take (a dataset that yields
        ``controlnet_cond`` trains a ControlNet-controlled denoiser this way)."""
        accepted = self.backbone.input_names()
        return {k: v.to(self.backbone.device) if isinstance(v, Tensor) else v
                for k, v in batch.items() if k in accepted}

    def loss(self, batch, denoiser, generator):
        loss = self.per_sample_loss(batch, denoiser, generator).mean()
        return loss, {"loss": loss.detach()}

    def per_sample_loss(self, batch: dict[str, Any], denoiser: nn.Module, generator: torch.Generator) -> Tensor:
        """The weighted denoising loss of each sample of ``batch``, shape ``(N,)``."""
        bb = self.backbone
        param = bb.parameterization
        device = bb.device
        extra = self.extra_inputs(batch, generator)  # first: its random draws come before the noise's
        x0 = bb.encode_images(batch_samples(batch).to(device), generator=generator)
        cond = self.condition(batch, generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(device)
        if self.options.noise_offset:
            offset = torch.randn((x0.shape[0], x0.shape[1]), generator=generator).to(device)
            noise = noise + self.options.noise_offset * offset.reshape(*offset.shape, *[1] * (x0.ndim - 2))
        t = param.sample_timesteps(x0.shape[0], generator, device)
        x_t = param.add_noise(x0, noise, t)
        output = bb.predict(x_t, t, cond, denoiser=denoiser, extra=extra)
        target = param.target(x0, noise, t)
        per_sample = F.mse_loss(output.float(), target.float(), reduction="none").flatten(1).mean(1)
        weights = param.loss_weight(t, bb.loss_weighting, bb.snr_gamma).to(per_sample)
        return weights * per_sample


__all__ = ["DenoisingObjective", "Objective"]
