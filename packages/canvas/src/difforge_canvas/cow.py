"""Cyclic One-Way Diffusion, COW (Wang et al. 2024, "Diffusion in Diffusion: Cyclic One-Way
Diffusion for Text-Vision-Conditioned Generation"): a visual condition (pixels the user gives,
e.g. a subject patch) is kept in its region while the text controls the rest of the image, with
a frozen model and no training.

- **Seed initialisation**: the condition is pasted onto a plain canvas, and that seed image,
  encoded and noised to the cycle's upper level ``cycle_start``, starts the sampling.
- **Cyclic one-way diffusion**: the sampler runs from ``cycle_start`` down to ``cycle_end``;
  after every step the condition region is reset to the seed noised to the new level, so
  information flows from the condition into the rest of the image and never back ("one-way");
  at ``cycle_end`` the image is re-noised to ``cycle_start`` (the forward process in one jump)
  and the cycle repeats, each cycle spreading the condition's influence further ("cyclic").
- **Visual condition preservation**: the last stretch from ``cycle_end`` to 0 keeps resetting
  the region while the level is above ``preserve_until`` (0: to the end, the region is the
  condition's own pixels up to the VAE's reconstruction).

The same function runs the two training-free baselines a user would otherwise reach for:
paste-and-replace inpainting (``cycles=1, cycle_start=1``: from pure noise, the region reset
every step) and SDEdit from the seed image (``cycles=1, preserve_until=1``: noised once, never reset).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from difforge.plugin_api import SamplingSchedule, UsageError, get_registry, schedule_from_scheduler

from .canvas import (
    decode,
    encode_conditions,
    native_window,
    pixels_per_latent,
    plain_colour,
    schedule_part,
    step_at_level,
)


@dataclass
class COW:
    """Images ``(N, 3, H, W)`` in [-1, 1], their ``latents``, the pixel ``mask`` of the condition
    region ``(H, W)``, and ``nfe``: denoiser evaluations per image."""

    images: Tensor
    latents: Tensor
    mask: Tensor
    nfe: int


def paste(condition: Tensor, position: tuple[int, int], size: tuple[int, int],
          background: str) -> tuple[Tensor, Tensor]:
    """The seed image: ``condition`` ``(3, h, w)`` in [-1, 1] at ``position = (left, top)`` on a
    ``size = (height, width)`` canvas of the ``background`` colour; returns it ``(3, H, W)`` and
    the condition's mask ``(H, W)``."""
    height, width = size
    left, top = position
    if condition.ndim != 3 or condition.shape[0] != 3:
        raise UsageError(f"cow: the condition must be an RGB image (3, h, w), got shape {tuple(condition.shape)}")
    _, h, w = condition.shape
    if left < 0 or top < 0 or left + w > width or top + h > height:
        raise UsageError(f"cow: a {h}x{w} condition at (left {left}, top {top}) leaves the {height}x{width} canvas")
    seed = plain_colour(background, "cow", "background").reshape(3, 1, 1).expand(3, height, width).clone()
    seed[:, top:top + h, left:left + w] = condition.float()
    mask = torch.zeros(height, width)
    mask[top:top + h, left:left + w] = 1
    return seed, mask


def cycle_bounds(schedule: SamplingSchedule, num_train_timesteps: int, cycle_start: float,
                 cycle_end: float) -> tuple[int, int]:
    """The steps of ``schedule`` where the cycle starts and where it ends."""
    return (step_at_level(schedule, cycle_start, num_train_timesteps),
            step_at_level(schedule, cycle_end, num_train_timesteps))


def _evaluations(cycles: int, start: int, stop: int, steps: int) -> int:
    """Denoiser evaluations of ``cycles`` passes over steps ``start .. stop - 1``, then the rest of ``steps``."""
    return cycles * (stop - start) + steps - stop


def cow_nfe(backbone, num_steps: int, cycles: int = 3, cycle_start: float = 0.8, cycle_end: float = 0.4) -> int:
    """Denoiser evaluations per image of :func:`sample_cow` with these options (without guidance's doubling)."""
    schedule = schedule_from_scheduler(backbone.scheduler, num_steps)
    start, stop = cycle_bounds(schedule, backbone.scheduler.config.num_train_timesteps, cycle_start, cycle_end)
    return _evaluations(cycles, start, stop, len(schedule))


@torch.no_grad()
def sample_cow(backbone, prompts: list[str] | None, condition: Tensor, *, position: tuple[int, int] = (0, 0),
               num_samples: int = 1, cycles: int = 3, cycle_start: float = 0.8, cycle_end: float = 0.4,
               preserve_until: float = 0.0, background: str = "#ececec", num_steps: int = 25,
               sampler: str = "ddim", guidance_scale: float = 1.0, generator: torch.Generator | None = None,
               **sampler_options) -> COW:
    """COW on the model's native canvas: ``condition`` ``(3, h, w)`` in [-1, 1] kept at
    ``position = (left, top)`` (pixels), one image per prompt (or ``num_samples`` of an
    unconditional model); ``cycles`` cycles between the noise levels ``cycle_start`` and
    ``cycle_end`` (fractions of the training timesteps), the region reset while the level is
    above ``preserve_until``. ``cycles=1, cycle_start=1`` is paste-and-replace inpainting;
    ``cycles=1, preserve_until=1`` is SDEdit from the seed image."""
    if cycles < 1 or not 0 <= cycle_end < cycle_start <= 1 or not 0 <= preserve_until <= 1:
        raise UsageError(f"cow: needs cycles >= 1, 0 <= cycle_end < cycle_start <= 1 and 0 <= preserve_until <= 1, "
                         f"got cycles={cycles}, cycle_start={cycle_start}, cycle_end={cycle_end}, "
                         f"preserve_until={preserve_until}")
    schedule = schedule_from_scheduler(backbone.scheduler, num_steps)
    if schedule.alphas is None:
        raise UsageError("cow: needs a variance-preserving (DDPM-family) scheduler")
    channels, height, width = native_window(backbone, "cow")
    scale = pixels_per_latent(backbone)
    seed_pixels, mask = paste(condition, position, (height * scale, width * scale), background)
    conditions = encode_conditions(backbone, "cow", prompts)
    batch = len(conditions) if conditions is not None else num_samples
    dtype = next(backbone.denoiser.parameters()).dtype
    seed = backbone.encode_images(seed_pixels[None].to(backbone.device), generator=generator).to(dtype)
    region = (F.avg_pool2d(mask[None, None], scale)[0] if scale > 1 else mask[None]).to(seed)

    trained = backbone.scheduler.config.num_train_timesteps
    start, stop = cycle_bounds(schedule, trained, cycle_start, cycle_end)
    if stop <= start:
        raise UsageError(f"cow: no step of a {num_steps}-step schedule lies between the levels {cycle_start} and "
                         f"{cycle_end}; use more steps or a wider cycle")
    released = preserve_until * trained

    def reset(stretch, offset: int):
        """After each step of ``stretch`` (step ``offset`` of the schedule onwards): the region
        back to the seed noised to the level the step reached, while that level is not below
        ``preserve_until``."""
        def callback(step: int, t, x: Tensor, x0: Tensor) -> Tensor:
            following = offset + step + 1  # the level x is at now: the next step's, or 0 at the end
            level = schedule.timesteps[following].item() if following < len(schedule) else 0
            if level < released:
                return x
            alpha = stretch.alphas_prev[step].to(x)
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)
            return region * (alpha.sqrt() * seed + (1 - alpha).sqrt() * noise) + (1 - region) * x
        return callback

    denoise = backbone.guided_denoise(conditions, guidance_scale, batch)
    solve = get_registry("samplers").get(sampler)
    top = schedule.alphas[start].to(seed)
    noise = torch.randn((batch, channels, height, width), generator=generator, dtype=torch.float32).to(seed)
    x = top.sqrt() * seed + (1 - top).sqrt() * noise
    cycle = schedule_part(schedule, start, stop)
    for index in range(cycles):
        x = solve(denoise, x, cycle, generator=generator, callback=reset(cycle, start), **sampler_options)
        if index < cycles - 1:
            jump = (top / cycle.alphas_prev[-1].to(seed)).clamp(max=1)
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)
            x = jump.sqrt() * x + (1 - jump).sqrt() * noise
    rest = schedule_part(schedule, stop)
    if len(rest):
        x = solve(denoise, x, rest, generator=generator, callback=reset(rest, stop), **sampler_options)
    return COW(images=decode(backbone, x), latents=x, mask=mask, nfe=_evaluations(cycles, start, stop, len(schedule)))


def condition_fidelity(images: Tensor, condition: Tensor, position: tuple[int, int]) -> Tensor:
    """Per image, the PSNR (dB, peak-to-peak 2) of its condition region against the condition."""
    left, top = position
    _, h, w = condition.shape
    region = images[..., top:top + h, left:left + w].float()
    mse = (region - condition.to(region)).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)
