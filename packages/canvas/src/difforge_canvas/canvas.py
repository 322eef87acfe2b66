"""What the canvas methods share: the model's native window, the canvas noise, one sampler run
over a fused denoiser, and decoding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from difforge.plugin_api import SamplingSchedule, UsageError, get_registry, schedule_from_scheduler

from .views import Prepare, View, fused_denoise, view_conditions


def pixels_per_latent(backbone) -> int:
    """How many pixels one denoiser-space position spans (the VAE's downsampling; 1 in pixel space)."""
    if backbone.vae is None:
        return 1
    return 2 ** (len(backbone.vae.config.block_out_channels) - 1)


def native_window(backbone, method: str) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the model's native sample in denoiser space; one line
    naming ``method`` for a model that is not an image model of fixed size."""
    shape = backbone.sample_shape()
    if shape is None or len(shape) != 3:
        raise UsageError(f"{method}: needs an image model with a fixed sample size; this model's samples are {shape}")
    return tuple(shape)


def to_latent_size(backbone, method: str, name: str, pixels: int) -> int:
    """A canvas size in pixels -> denoiser positions, refused in one line if it is not a multiple."""
    scale = pixels_per_latent(backbone)
    if pixels % scale:
        raise UsageError(f"{method}: {name} {pixels} is not a multiple of the model's {scale}-pixel latent cell")
    return pixels // scale


def plain_colour(colour: str, method: str, name: str) -> Tensor:
    """A colour name or hex code -> its RGB in [-1, 1] ``(3,)``; one line naming ``method`` and
    the argument ``name`` if it is not a colour."""
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(colour)[:3]
    except ValueError:
        raise UsageError(f"{method}: {name} {colour!r} is not a colour (e.g. '#808080', 'white')") from None
    return torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1


def encode_conditions(backbone, method: str, prompts: Sequence[str] | None) -> Tensor | None:
    """One condition row per prompt for a text model, ``None`` for an unconditional one."""
    kind = backbone.conditioning
    if kind == "none":
        return None
    if kind != "text":
        raise UsageError(f"{method}: samples text-conditioned and unconditional models; this model is "
                         f"{kind}-conditioned")
    if not prompts:
        raise UsageError(f"{method}: the model is text-conditioned; give prompts")
    return backbone.encode_prompts(list(prompts))


def sample_views(backbone, views: Sequence[View], conditions: Tensor | None, canvas: tuple[int, int, int], *,
                 batch: int, num_steps: int, sampler: str, guidance_scale: float,
                 generator: torch.Generator | None, prepare: Prepare | None = None, **sampler_options) -> Tensor:
    """``batch`` canvases of shape ``canvas`` in denoiser space, sampled by the registered
    ``sampler`` over the views' fused denoiser (the latents, not decoded); ``prepare`` as in
    :func:`~difforge_canvas.views.fused_denoise`."""
    rows = view_conditions(conditions, views, batch)
    window = backbone.guided_denoise(rows, guidance_scale, len(views) * batch)
    dtype = next(backbone.denoiser.parameters()).dtype
    noise = torch.randn((batch, *canvas), generator=generator, dtype=torch.float32).to(backbone.device, dtype)
    schedule = schedule_from_scheduler(backbone.scheduler, num_steps)
    solve = get_registry("samplers").get(sampler)
    return solve(fused_denoise(window, views, prepare), noise, schedule, generator=generator, **sampler_options)


def decode(backbone, latents: Tensor, *, wrap: int = 0) -> Tensor:
    """Latents -> pixels in [-1, 1]; ``wrap > 0`` decodes with that many columns of the opposite
    edge on each side and crops them off, so that a canvas whose columns wrap around (a 360°
    panorama) is decoded as a cylinder, not with the decoder's zero padding at its two ends."""
    if wrap == 0:
        return backbone.decode(latents).clamp(-1, 1)
    padded = torch.cat([latents[..., -wrap:], latents, latents[..., :wrap]], dim=-1)
    margin = wrap * pixels_per_latent(backbone)
    return backbone.decode(padded)[..., margin:-margin].clamp(-1, 1)


def schedule_part(schedule: SamplingSchedule, start: int, stop: int | None = None) -> SamplingSchedule:
    """Steps ``start .. stop - 1`` of a variance-preserving schedule (to the end by default)."""
    stop = len(schedule) if stop is None else stop
    return SamplingSchedule(timesteps=schedule.timesteps[start:stop], alphas=schedule.alphas[start:stop],
                            alphas_prev=schedule.alphas_prev[start:stop])


def step_at_level(schedule: SamplingSchedule, level: float, num_train_timesteps: int) -> int:
    """The first step whose timestep is at most ``level * num_train_timesteps`` (``len(schedule)``
    if none is)."""
    below = (schedule.timesteps.float() <= level * num_train_timesteps).nonzero()
    return int(below[0]) if len(below) else len(schedule)
