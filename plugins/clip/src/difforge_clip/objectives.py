"""The objectives that train a student CLIP through ``difforge.train``, the teacher being the
run's backbone (frozen): contrastive fine-tuning, NegCLIP-style hard negatives, SDS-CLIP and
DIVA-style diffusion feedback.

Each declares the student's trainable parts as what the run trains (``trainable_modules``), so
the loop optimises, checkpoints and resumes exactly them, and saves the student in the
transformers ``CLIPModel`` layout as the run's ``model``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from difforge.plugin_api import ConfigError, Objective, batch_samples

from .compositions import hard_negative
from .student import load_clip, save_clip, select_trainable


class ClipObjectiveOptions(BaseModel):
    """Options shared by the CLIP objectives.

    Args:
        student: the CLIP to tune: a model name (``shapes-sd-tiny``: the zoo's CLIP beside the
            pipeline) or a folder holding a ``CLIPModel`` (or its ``clip/`` subfolder).
        trainable: ``layernorm`` (SDS-CLIP), ``lora`` (LoRA on q/v projections of both towers),
            ``vision`` (the vision tower and its projection, DIVA) or ``all`` (NegCLIP).
        lora_rank: the LoRA rank with ``trainable: lora``.
    """

    model_config = ConfigDict(extra="forbid")

    student: str = "shapes-sd-tiny"
    trainable: Literal["layernorm", "lora", "vision", "all"] = "layernorm"
    lora_rank: int = Field(4, ge=1)


class ClipFinetuneObjective(Objective):
    """``clip-finetune``: the symmetric InfoNCE loss of CLIP (Radford et al. 2021) on the
    run's image–caption pairs, on the student's trainable parts only — the plain fine-tuning
    every other CLIP objective is compared with."""

    name = "clip-finetune"
    requires = frozenset({"images", "captions"})
    options_model: type[BaseModel] = ClipObjectiveOptions
    def __init__(self, backbone, **options: Any) -> None:
        super().__init__(backbone, **options)
        backbone.denoiser.requires_grad_(False)  # the teacher: gradients flow through it, never into it
        self.clip, self.tokenizer = load_clip(self.options.student)
        self.student = select_trainable(self.clip, self.options.trainable, self.options.lora_rank)
        self.head = self.build_head()

    def build_head(self) -> nn.Module | None:
        """A module trained beside the student (SDS-CLIP's mapper, DIVA's projection), or ``None``."""
        return None

    def trainable_modules(self, config) -> dict[str, nn.Module]:
        """The student's trainable parts (and the objective's head); the teacher stays frozen."""
        if config.adapter is not None:
            raise ConfigError(f"adapter: objective {self.name!r} chooses what of the CLIP trains with "
                              "objective.options.trainable (layernorm, lora, vision, all); remove the adapter section")
        modules = {"student": self.student}
        if self.head is not None:
            modules["head"] = self.head
        return modules

    def setup(self, context) -> None:
        """The whole student on the run's device (only its trainable parts are placed by the loop)."""
        self.clip.to(self.backbone.device)

    # ------------------------------------------------------------------ pieces
    def tokens(self, captions) -> Tensor:
        """The student tokenizer's ids of ``captions``, padded to its maximum length."""
        tok = self.tokenizer
        return tok(list(captions), padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids.to(self.clip.logit_scale.device)

    def image_embeds(self, images: Tensor) -> Tensor:
        """The student's projected image embeddings ``f_φ(x)`` (differentiable)."""
        return self.clip.visual_projection(self.clip.vision_model(pixel_values=images).pooler_output)

    def text_embeds(self, captions) -> Tensor:
        """The student's projected text embeddings (differentiable)."""
        return self.clip.text_projection(self.clip.text_model(input_ids=self.tokens(captions)).pooler_output)

    def contrastive(self, images: Tensor, captions, negatives=()) -> Tensor:
        """Symmetric InfoNCE; ``negatives`` are extra captions only the image→text side sees (NegCLIP)."""
        image = F.normalize(self.image_embeds(images), dim=-1)
        text = F.normalize(self.text_embeds([*captions, *negatives]), dim=-1)
        logits = self.clip.logit_scale.exp() * image @ text.T
        labels = torch.arange(len(images), device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits[:, :len(images)].T, labels)) / 2

    def loss(self, batch, denoiser, generator):
        """The contrastive loss of the batch's image–caption pairs."""
        images = batch_samples(batch).to(self.clip.logit_scale.device)
        loss = self.contrastive(images, batch["caption"])
        return loss, {"contrastive": loss.detach()}

    def save_trained(self, output_dir: Path, name: str = "model") -> Path:
        """The student in the ``CLIPModel`` layout (LoRA merged) with its tokenizer, and the head
        (a training artefact) as ``head.safetensors`` beside it."""
        path = save_clip(self.clip, self.tokenizer, Path(output_dir) / name)
        if self.head is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(path / "head.safetensors"))
        return path


class NegClipOptions(ClipObjectiveOptions):
    """Options of ``negclip``: the share of captions that get a hard negative."""

    trainable: Literal["layernorm", "lora", "vision", "all"] = "all"
    negative_share: float = Field(1.0, ge=0, le=1)


class NegClipObjective(ClipFinetuneObjective):
    """``negclip``: NegCLIP (Yuksekgonul et al. 2023, the ARO paper): contrastive fine-tuning with
    a hard-negative caption per image — the world's own swaps (colours, shapes, places of two
    objects) or replacements (one object's colour or shape) — added to the image→text softmax.
    Trains the whole CLIP by default, as NegCLIP does."""

    name = "negclip"
    options_model = NegClipOptions

    def loss(self, batch, denoiser, generator):
        """The contrastive loss with one hard negative per caption (drawn from ``generator``)."""
        images = batch_samples(batch).to(self.clip.logit_scale.device)
        captions = list(batch["caption"])
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        rng = random.Random(seed)
        negatives = [n for c in captions if rng.random() < self.options.negative_share
                     for n in [hard_negative(c, rng)] if n is not None]
        loss = self.contrastive(images, captions, negatives)
        return loss, {"contrastive": loss.detach(), "negatives": float(len(negatives))}


class SdsClipOptions(ClipObjectiveOptions):
    """Options of ``sds-clip``: ``sds_weight`` is the paper's λ."""

    sds_weight: float = Field(1.0, ge=0)


class SdsClipObjective(ClipFinetuneObjective):
    """``sds-clip``: SDS-CLIP (Basu et al. 2023), ``L = L_CLIP + λ · L_SDS`` with
    ``L_SDS = E_{t,ε} || ε_θ(α_t · h_w(f_φ(x)) + σ_t · ε, t, c) − ε ||²``.

    ``f_φ(x)`` is the student's projected image embedding; ``h_w`` a learnt linear map from it to
    the frozen denoiser's input (a latent of the sample shape) — the paper's "differentiable
    image parameterisation"; ``c`` is the caption encoded by the *teacher's* frozen text encoder;
    the target follows the backbone's parameterisation (ε for shapes-sd-tiny). Gradients of
    ``L_SDS`` reach ``h_w`` and, through it, the student's image tower; only the declared
    trainable parts (LayerNorms by default, as the paper) and ``h_w`` are updated.
    """

    name = "sds-clip"
    options_model = SdsClipOptions

    def build_head(self) -> nn.Module:
        """``h_w``: a linear map from the projected image embedding to a denoiser-input latent."""
        if self.backbone.conditioning != "text" or self.backbone.text_encoder is None:
            raise ConfigError("model: 'sds-clip' distils a text-conditioned diffusion model; this one is "
                              f"conditioned on {self.backbone.conditioning}")
        shape = self.backbone.sample_shape()
        if shape is None:
            raise ConfigError("model: 'sds-clip' needs a denoiser whose config fixes the sample shape")
        self.latent_shape = tuple(shape)
        return nn.Linear(self.clip.config.projection_dim, int(torch.tensor(shape).prod()))

    def sds(self, image_embeds: Tensor, captions, denoiser, generator) -> Tensor:
        """``L_SDS`` of a batch of student image embeddings and their captions."""
        bb = self.backbone
        param = bb.parameterization
        x0 = self.head(image_embeds).view(len(image_embeds), *self.latent_shape)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        t = param.sample_timesteps(len(x0), generator, bb.device)
        with torch.no_grad():
            cond = bb.encode_prompts(list(captions))
        output = bb.predict(param.add_noise(x0, noise, t), t, cond, denoiser=denoiser)
        return F.mse_loss(output.float(), param.target(x0, noise, t).float())

    def loss(self, batch, denoiser, generator):
        """``L_CLIP + λ · L_SDS`` of the batch."""
        images = batch_samples(batch).to(self.clip.logit_scale.device)
        captions = list(batch["caption"])
        contrastive = self.contrastive(images, captions)
        sds = self.sds(self.image_embeds(images), captions, denoiser, generator)
        loss = contrastive + self.options.sds_weight * sds
        return loss, {"contrastive": contrastive.detach(), "sds": sds.detach()}


class DivaOptions(ClipObjectiveOptions):
    """Options of ``diva``: ``patch_tokens`` random patch tokens join the class token in the
    condition (DIVA's "visual dense recap"; 0 = the class token alone)."""

    trainable: Literal["layernorm", "lora", "vision", "all"] = "vision"
    patch_tokens: int = Field(0, ge=0)


class DivaObjective(ClipFinetuneObjective):
    """``diva``: DIVA-style diffusion feedback (Wang et al. 2024, "Diffusion Feedback Helps CLIP See
    Better"): image-only, no captions — the student's vision tokens, linearly projected to the
    denoiser's cross-attention width, replace the text condition of the frozen diffusion model,
    which denoises the image's own latent; the denoising loss trains the vision tower."""

    name = "diva"
    requires = frozenset({"images"})
    options_model = DivaOptions

    def build_head(self) -> nn.Module:
        """A linear projection from the vision tower's width to the denoiser's cross-attention width."""
        width = getattr(self.backbone.denoiser.config, "cross_attention_dim", None)
        if self.backbone.conditioning != "text" or not width:
            raise ConfigError("model: 'diva' conditions a cross-attention denoiser on vision tokens; "
                              f"{type(self.backbone.denoiser).__name__} has no cross_attention_dim")
        return nn.Linear(self.clip.config.vision_config.hidden_size, int(width))

    def loss(self, batch, denoiser, generator):
        """The frozen denoiser's loss on the images' own latents, conditioned on their vision tokens."""
        bb = self.backbone
        param = bb.parameterization
        images = batch_samples(batch).to(self.clip.logit_scale.device)
        hidden = self.clip.vision_model(pixel_values=images).last_hidden_state
        hidden = self.clip.vision_model.post_layernorm(hidden)
        if self.options.patch_tokens:
            chosen = torch.randperm(hidden.shape[1] - 1, generator=generator)[:self.options.patch_tokens] + 1
            hidden = torch.cat([hidden[:, :1], hidden[:, chosen.to(hidden.device)]], dim=1)
        else:
            hidden = hidden[:, :1]
        cond = self.head(hidden)
        x0 = bb.encode_images(images, generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        t = param.sample_timesteps(len(x0), generator, bb.device)
        output = bb.predict(param.add_noise(x0, noise, t), t, cond, denoiser=denoiser)
        loss = F.mse_loss(output.float(), param.target(x0, noise, t).float())
        return loss, {"diffusion": loss.detach()}


__all__ = ["ClipFinetuneObjective", "ClipObjectiveOptions", "DivaObjective", "DivaOptions", "NegClipObjective",
           "NegClipOptions", "SdsClipObjective", "SdsClipOptions"]
