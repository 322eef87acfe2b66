"""A diffusers denoiser + a diffusers noise scheduler + a parameterisation.

Optional components make it a latent, text-conditioned model shaped like Stable Diffusion:
an ``AutoencoderKL`` (``vae``) and a CLIP text encoder with its tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..adapters.inputs import adapter_input_names, adapter_inputs, adapter_null_inputs
from ..sampling.schedule import schedule_from_scheduler
from .parameterization import FROM_PREDICTION_TYPE, Parameterization
from .specs import DenoiserSpec

SINGLE_FILE_CONFIG_KEY = "difforge_denoiser_config"


def denoiser_spec(denoiser: nn.Module) -> DenoiserSpec:
    """The registered :class:`DenoiserSpec` of ``denoiser``'s class (a one-line error naming the
    class and the hook when none is registered)."""
    from ..errors import ConfigError
    from ..plugins import get_registry

    registry = get_registry("denoisers")
    name = type(denoiser).__name__
    if name not in registry:
        raise ConfigError(f"no denoiser spec is registered for {name}; a plugin registers one with "
                          f"difforge_register_denoisers (known: {', '.join(registry.names())})")
    return registry.get(name)


def conditioning_kind(denoiser: nn.Module) -> str:
    """What the denoiser is conditioned on: ``text``, ``class``, ``vector`` or ``none``."""
    return denoiser_spec(denoiser).conditioning_kind(denoiser.config)


class Backbone(nn.Module):
    """The diffusion model difforge trains and samples.

    Args:
        denoiser: a diffusers model (``UNet2DConditionModel``, ``UNet2DModel``,
            ``DiTTransformer2DModel``, ``UNet1DModel``...).
        scheduler: a diffusers scheduler; its ``alphas_cumprod`` or ``sigmas`` define the noise.
        parameterization: ``epsilon``, ``v``, ``x0`` or ``flow`` (or a plugin's); defaults to
            the scheduler's ``prediction_type``.
        vae, text_encoder, tokenizer: optional Stable-Diffusion components.
        loss_weighting: ``uniform`` or ``min_snr``; ``snr_gamma`` is min-SNR's γ.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        scheduler,
        parameterization: str | None = None,
        *,
        vae: nn.Module | None = None,
        text_encoder: nn.Module | None = None,
        tokenizer=None,
        loss_weighting: str = "uniform",
        snr_gamma: float = 5.0,
        parameterization_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from ..plugins import get_registry

        self.denoiser = denoiser
        self.spec = denoiser_spec(denoiser)
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        is_flow = not hasattr(scheduler, "alphas_cumprod")
        default = "flow" if is_flow else FROM_PREDICTION_TYPE.get(
            scheduler.config.get("prediction_type", "epsilon"), "epsilon"
        )
        name = parameterization or default
        cls = get_registry("parameterizations").get(name)
        self.parameterization: Parameterization = cls(scheduler, **(parameterization_options or {}))
        if not is_flow and scheduler.config.get("prediction_type") != cls.prediction_type:
            # keep the saved scheduler consistent so diffusers pipelines sample correctly
            scheduler = type(scheduler).from_config(scheduler.config, prediction_type=cls.prediction_type)
        self.scheduler = scheduler
        if loss_weighting not in ("uniform", "min_snr"):
            raise ValueError(f"unknown loss_weighting {loss_weighting!r}; known: uniform, min_snr")
        self.loss_weighting = loss_weighting
        self.snr_gamma = snr_gamma
        if vae is not None:
            vae.requires_grad_(False)
        if text_encoder is not None:
            text_encoder.requires_grad_(False)

    # ------------------------------------------------------------------ properties
    @property
    def conditioning(self) -> str:
        """What the denoiser is conditioned on: ``text``, ``class``, ``vector`` or ``none``."""
        return self.spec.conditioning_kind(self.denoiser.config)

    def replace_denoiser(self, denoiser: nn.Module) -> None:
        """Use ``denoiser`` from now on (e.g. the UNet wrapped with a ControlNet), with its own spec."""
        self.spec = denoiser_spec(denoiser)
        self.denoiser = denoiser

    def input_names(self) -> frozenset[str]:
        """The extra model inputs this backbone takes per call: its denoiser's and its adapters'."""
        return self.spec.inputs | adapter_input_names(self.denoiser)

    @property
    def embeds_guidance(self) -> bool:
        """Whether the denoiser takes the guidance scale as an input instead of classifier-free
        guidance: a guidance-distilled model such as an LCM (``time_cond_proj_dim`` in its config)."""
        return getattr(self.denoiser.config, "time_cond_proj_dim", None) is not None

    def guidance_inputs(self, guidance_scale: float, batch: int) -> dict[str, Tensor]:
        """The extra model inputs that ask a guidance-embedding denoiser for ``guidance_scale``
        (``timestep_cond``: :func:`~difforge.sampling.guidance.guidance_scale_embedding` of
        ``guidance_scale - 1``, one row per sample); empty for any other denoiser."""
        if not self.embeds_guidance:
            return {}
        from ..sampling.guidance import guidance_scale_embedding

        w = torch.full((batch,), float(guidance_scale) - 1.0)
        dtype = next(self.denoiser.parameters()).dtype
        emb = guidance_scale_embedding(w, self.denoiser.config.time_cond_proj_dim)
        return {"timestep_cond": emb.to(self.device, dtype)}

    @property
    def latent_scale(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 1.0)) if self.vae is not None else 1.0

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    # ------------------------------------------------------------------ encoding
    @torch.no_grad()
    def encode_images(self, pixels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Pixels in [-1, 1] -> the space the denoiser works in (VAE latents, or pixels)."""
        if self.vae is None:
            return pixels
        dist = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator, dtype=dist.mean.dtype)
        latents = dist.mean + dist.std * noise.to(dist.mean.device)
        # the VAE's posterior mean comes out channels-last; with it, torch 2.13's CPU GroupNorm
        # backward segfaults when only the norm's affine parameters need gradients (a frozen
        # conv_in, as a FreezeAsGuard mask can ask): keep latents contiguous
        return (latents * self.latent_scale).contiguous()

    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> pixels in [-1, 1] (identity for pixel-space models)."""
        if self.vae is None:
            return latents
        return self.vae.decode(latents.to(self.vae.dtype) / self.latent_scale).sample

    def encode_prompts(self, prompts: Sequence[str]) -> Tensor:
        """Prompts -> the text encoder's last hidden states (Stable Diffusion's conditioning);
        differentiable only while the text encoder has trainable parameters (e.g. a LoRA)."""
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("this backbone has no text encoder/tokenizer; it cannot encode prompts")
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.text_encoder.device)
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.text_encoder.parameters())
        with torch.set_grad_enabled(trains):
            return self.text_encoder(tokens)[0]

    def null_condition(self, batch: int) -> Tensor | None:
        """The unconditional input for classifier-free guidance."""
        kind = self.conditioning
        if kind == "text":
            return self.encode_prompts([""] * batch)
        if kind == "class":
            num = getattr(self.denoiser.config, "num_embeds_ada_norm", None) or getattr(
                self.denoiser.config, "num_class_embeds", None
            )
            return torch.full((batch,), int(num), dtype=torch.long, device=self.device)
        return None

    # ------------------------------------------------------------------ model calls
    def predict(self, x_t: Tensor, t: Tensor, cond: Any = None, denoiser: nn.Module | None = None,
                extra: Mapping[str, Any] | None = None) -> Tensor:
        """The raw denoiser output at ``(x_t, t)`` (``t`` in the parameterisation's units).

        ``denoiser`` may be an accelerate/DDP-wrapped copy of ``self.denoiser``. ``extra`` holds
        further model inputs for this call: keywords the denoiser's spec accepts (e.g. a
        ControlNet's ``controlnet_cond``) go to the denoiser, inputs of its adapters (an
        IP-Adapter's ``ip_adapter_image_embeds``, an SC-Tuner's ``condition_map``) to the adapters.
        """
        model = denoiser if denoiser is not None else self.denoiser
        spec = self.spec
        timestep = self.parameterization.model_timestep(t)
        kwargs: dict[str, Any] = {}
        if cond is not None:
            if spec.condition_kwarg is None:
                raise ValueError(f"{type(self.denoiser).__name__} is unconditional but a condition was given")
            kwargs[spec.condition_kwarg] = cond
        extra = dict(extra or {})
        for key in spec.inputs & extra.keys():
            kwargs[key] = extra.pop(key)
        with adapter_inputs(self.denoiser, extra):
            if spec.timestep_kwarg:
                out = model(x_t, **{spec.timestep_kwarg: timestep}, **kwargs)
            else:
                out = model(x_t, timestep, **kwargs)
        out = out.sample if hasattr(out, "sample") else out[0] if isinstance(out, tuple) else out
        if out.shape[1] != x_t.shape[1]:  # learned-sigma models output 2C channels
            out = out[:, : x_t.shape[1]]
        return out

    def denoise_x0(self, x_t: Tensor, timestep: Tensor, cond: Any = None,
                   extra: Mapping[str, Any] | None = None, denoiser: nn.Module | None = None) -> Tensor:
        """The ``x0`` estimate the samplers consume, at a model-facing (scheduler) timestep."""
        t = self.parameterization.from_model_timestep(timestep)
        return self.parameterization.to_x0(self.predict(x_t, t, cond, denoiser=denoiser, extra=extra), x_t, t)

    def guided_denoise(self, cond: Any, guidance_scale: float, batch: int, *, guidance: str | Callable = "cfg",
                       uncond: Any = None, extra: Mapping[str, Any] | None = None,
                       uncond_extra: Mapping[str, Any] | None = None,
                       denoiser: nn.Module | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """``denoise(x, timestep) -> x0`` for ``batch`` samples of ``cond`` at ``guidance_scale``:
        ``guidance`` (a registered name or a function with the signature of
        :func:`~difforge.sampling.guidance.classifier_free_guidance`) between ``cond`` and
        ``uncond`` (default: :meth:`null_condition`), or, for a denoiser that embeds the guidance
        scale (:attr:`embeds_guidance`), one conditional call with that scale as its input, as
        diffusers' ``LatentConsistencyModelPipeline`` samples an LCM. ``denoiser`` may be a
        wrapped copy of :attr:`denoiser`."""
        from ..plugins import get_registry

        extra = dict(extra or {})
        if self.embeds_guidance and "timestep_cond" not in extra:
            extra.update(self.guidance_inputs(guidance_scale, batch))
            guidance_scale = 1.0
        if isinstance(guidance, str):
            guidance = get_registry("guidance").get(guidance)
        if guidance_scale != 1.0 and uncond is None:
            uncond = self.null_condition(batch)
        uncond_extra = {**adapter_null_inputs(self.denoiser, extra), **(uncond_extra or {})}

        def denoise(x: Tensor, timestep: Tensor, c: Any, inputs: Mapping[str, Any]) -> Tensor:
            return self.denoise_x0(x, timestep, c, extra=inputs, denoiser=denoiser)

        return guidance(denoise, cond, uncond, guidance_scale, extra=extra, uncond_extra=uncond_extra)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str] | None = None,
        *,
        num_samples: int | None = None,
        class_labels: Tensor | None = None,
        num_steps: int = 25,
        sampler: str | Callable = "ddim",
        guidance_scale: float = 1.0,
        guidance: str | Callable = "cfg",
        generator: torch.Generator | None = None,
        shape: Sequence[int] | None = None,
        callback: Callable | None = None,
        decode: bool = True,
        condition: Tensor | None = None,
        extra: Mapping[str, Any] | None = None,
        uncond_extra: Mapping[str, Any] | None = None,
        **sampler_options: Any,
    ) -> Tensor:
        """Draw samples; returns decoded pixels in [-1, 1] (or latents if ``decode=False``).

        The condition is ``prompts`` (text models), ``class_labels`` or ``condition`` (any
        tensor the denoiser's condition keyword takes, e.g. an observation vector); ``extra``
        holds further model inputs (see :meth:`predict`), one row per sample. Classifier-free
        guidance duplicates them for its unconditional half, except where the adapter taking an
        input defines a null one (an IP-Adapter's zero image) or ``uncond_extra`` gives it.
        ``sampler`` is a registered name (``ddpm``, ``ddim``, ``euler``, ``flow_euler``) or a
        function; ``guidance`` a registered guidance (``cfg``) or a function with its signature
        (:func:`~difforge.sampling.guidance.classifier_free_guidance`); ``callback(step, t, x, x0)``
        runs after each step and may replace ``x``. A denoiser that embeds the guidance scale (an
        LCM) gets ``guidance_scale`` as its input instead (:meth:`guided_denoise`).
        """
        from ..plugins import get_registry

        cond = None
        if prompts is not None:
            cond = self.encode_prompts(prompts)
            batch = len(prompts)
        elif class_labels is not None:
            cond = class_labels.to(self.device)
            batch = len(class_labels)
        elif condition is not None:
            cond = condition.to(self.device)
            batch = len(condition)
        else:
            batch = num_samples or 1
        if shape is None:
            shape = self.sample_shape()
        if shape is None:
            raise ValueError(f"the config of {type(self.denoiser).__name__} does not fix a sample shape; "
                             "give sample(shape=...)")
        if isinstance(sampler, str):
            if self.parameterization.continuous and sampler in ("ddpm", "ddim", "euler"):
                sampler = "flow_euler"
            sampler = get_registry("samplers").get(sampler)
        dtype = next(self.denoiser.parameters()).dtype
        noise = torch.randn((batch, *shape), generator=generator, dtype=torch.float32).to(self.device, dtype)
        denoise = self.guided_denoise(cond, guidance_scale, batch, guidance=guidance, extra=extra,
                                      uncond_extra=uncond_extra)
        schedule = schedule_from_scheduler(self.scheduler, num_steps)
        latents = sampler(denoise, noise, schedule, generator=generator, callback=callback, **sampler_options)
        return self.decode(latents).clamp(-1, 1) if decode else latents

    def sample_shape(self) -> tuple[int, ...] | None:
        """The shape of one sample in denoiser space, from the denoiser's config (``None`` when
        the config does not fix it)."""
        return self.spec.sample_shape(self.denoiser.config)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path) -> None:
        """Save in diffusers directory layout: a Stable Diffusion pipeline when it has a VAE, a text
        encoder and a tokenizer; otherwise ``denoiser/``, ``scheduler/`` and whichever of
        ``vae/``, ``text_encoder/`` + ``tokenizer/`` it has (e.g. a pixel-space text-to-image
        model)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.text_encoder is not None and self.vae is not None and self.tokenizer is not None:
            from diffusers import StableDiffusionPipeline

            pipe = StableDiffusionPipeline(
                vae=self.vae,
                text_encoder=self.text_encoder,
                tokenizer=self.tokenizer,
                unet=self.denoiser,
                scheduler=self.scheduler,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
            pipe.save_pretrained(path)
            return
        self.denoiser.save_pretrained(path / "denoiser")
        self.scheduler.save_pretrained(path / "scheduler")
        if self.vae is not None:
            self.vae.save_pretrained(path / "vae")
        if self.text_encoder is not None and self.tokenizer is not None:
            self.text_encoder.save_pretrained(path / "text_encoder")
            self.tokenizer.save_pretrained(path / "tokenizer")
        (path / "difforge_backbone.json").write_text(
            json.dumps({"parameterization": self.parameterization.name}, indent=2)
        )
