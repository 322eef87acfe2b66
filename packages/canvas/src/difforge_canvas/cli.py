"""``difforge panorama``, ``compose``, ``highres`` and ``cow``: one call each into the Python API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from difforge.plugin_api import load_model_arguments, model_arguments


def _common(p: argparse.ArgumentParser) -> None:
    model_arguments(p)
    p.add_argument("--steps", type=int, default=25, help="sampling steps")
    p.add_argument("--sampler", default="ddim", help="a registered sampler (ddim, euler, dpmpp_2m, ...)")
    p.add_argument("--sampler-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampler option, e.g. eta=0.5 (repeatable)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--num-samples", type=int, default=1, help="images per prompt (or per layout)")


def _sampler_options(args: argparse.Namespace) -> dict:
    from difforge.plugin_api import option_argument

    return dict(option_argument(item, "--sampler-option") for item in args.sampler_option)


def _write(images, report: dict, out: str, title: str) -> None:
    from difforge.plugin_api import atomic_save_json, save_grid

    print(json.dumps(report, indent=2))
    path = save_grid(images, out, columns=1, title=title)
    atomic_save_json(report, Path(out).with_suffix(".json"))
    print(f"wrote {path}")


def configure_panorama(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge panorama``."""
    _common(p)
    p.add_argument("--prompt", action="append", default=[], help="prompt (repeatable; a panorama each)")
    p.add_argument("--width", type=int, required=True, help="panorama width in pixels (the 360° circumference)")
    p.add_argument("--height", type=int, default=None, help="panorama height in pixels (default: the model's)")
    p.add_argument("--stride", type=int, default=None,
                   help="window stride in denoiser positions (default: a quarter of the model's width)")
    p.add_argument("--no-stitch", action="store_true",
                   help="plain MultiDiffusion: no stitch block, the two ends do not join")
    p.add_argument("--out", default="panorama.png", help="output PNG (a JSON of seam errors is written beside it)")


def run_panorama(args: argparse.Namespace) -> int:
    """Sample panoramas and report their wrap-around seam errors."""
    import torch

    from .panorama import column_step, sample_panorama, wrap_seam_error

    backbone = load_model_arguments(args)
    prompts = [p for p in args.prompt for _ in range(args.num_samples)] or None
    result = sample_panorama(backbone, prompts, width=args.width, height=args.height, num_samples=args.num_samples,
                             stitch=not args.no_stitch, stride=args.stride, num_steps=args.steps, sampler=args.sampler,
                             guidance_scale=args.guidance, generator=torch.Generator().manual_seed(args.seed),
                             **_sampler_options(args))
    report = {"method": "multidiffusion" if args.no_stitch else "stitchdiffusion", "nfe": result.nfe,
              "wrap_seam_error": wrap_seam_error(result.images).tolist(),
              "column_step": column_step(result.images).tolist()}
    _write(result.images, report, args.out, f"{report['method']} · {args.width} px · {result.nfe} window NFE")
    return 0


def configure_compose(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge compose``."""
    _common(p)
    p.add_argument("layout", help="segment layout, YAML or JSON: size [height, width] and segments "
                                  "(prompt + box [left, top, right, bottom] or mask image)")
    p.add_argument("--scaffold-fraction", type=float, default=0.3,
                   help="the fraction of the steps in the scaffolding phase (0: harmonising only)")
    p.add_argument("--scaffold-color", default="#dcdcdc", help="the scaffolding image's colour")
    p.add_argument("--reward", default=None, metavar="NAME",
                   help="a registered reward to score each segment's crop with against its prompt")
    p.add_argument("--out", default="composite.png", help="output PNG (a JSON report is written beside it)")


def run_compose(args: argparse.Namespace) -> int:
    """Compose images from a segment layout and report their boundary steps (and segment scores)."""
    import torch

    from difforge.plugin_api import get_registry

    from .composite import boundary_step, sample_composite, segment_scores
    from .layout import read_layout

    layout = read_layout(args.layout)
    layout.masks()  # a bad layout (or mask file) fails before any weights load
    reward = get_registry("rewards").get(args.reward) if args.reward else None
    backbone = load_model_arguments(args)
    result = sample_composite(backbone, layout, num_samples=args.num_samples,
                              scaffold_fraction=args.scaffold_fraction, scaffold_color=args.scaffold_color,
                              num_steps=args.steps, sampler=args.sampler, guidance_scale=args.guidance,
                              generator=torch.Generator().manual_seed(args.seed), **_sampler_options(args))
    report = {"prompts": layout.prompts, "nfe": result.nfe,
              "boundary_step": boundary_step(result.images, layout).tolist()}
    if reward is not None:
        report["segment_scores"] = segment_scores(result.images, layout, reward).tolist()
    _write(result.images, report, args.out, f"composite · {len(layout.segments)} segments · {result.nfe} NFE")
    return 0


def configure_highres(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge highres``."""
    _common(p)
    p.add_argument("--prompt", action="append", default=[], help="prompt (repeatable; an image each)")
    p.add_argument("--scale", type=int, default=2, help="times the model's native size (a power of 2)")
    p.add_argument("--naive", action="store_true",
                   help="sample the larger size directly from noise (no DiffuseHigh structure guidance)")
    p.add_argument("--no-attention-scaling", action="store_true",
                   help="leave self-attention unscaled (no entropy-preserving factor)")
    p.add_argument("--noise-level", type=float, default=0.6,
                   help="the level each upsampled stage is noised to (a fraction of the training timesteps)")
    p.add_argument("--guidance-until", type=float, default=0.3,
                   help="structure guidance stops below this level (a fraction of the training timesteps)")
    p.add_argument("--out", default="highres.png", help="output PNG")


def run_highres(args: argparse.Namespace) -> int:
    """Sample images above the native size (DiffuseHigh, entropy-scaled attention)."""
    import torch

    from .highres import sample_high_resolution

    backbone = load_model_arguments(args)
    prompts = [p for p in args.prompt for _ in range(args.num_samples)] or None
    result = sample_high_resolution(backbone, prompts, scale=args.scale, num_samples=args.num_samples,
                                    structure=not args.naive, attention_scaling=not args.no_attention_scaling,
                                    noise_level=args.noise_level, guidance_until=args.guidance_until,
                                    num_steps=args.steps, sampler=args.sampler, guidance_scale=args.guidance,
                                    generator=torch.Generator().manual_seed(args.seed))
    method = "naive" if args.naive else "diffusehigh"
    report = {"method": method, "attention_scaling": not args.no_attention_scaling, "nfe": result.nfe}
    _write(result.images, report, args.out, f"{method} · ×{args.scale} · {result.nfe} NFE")
    return 0


def configure_cow(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge cow``."""
    _common(p)
    p.add_argument("--condition", required=True, help="the visual condition: an image file kept as it is (its size)")
    p.add_argument("--position", type=int, nargs=2, default=(0, 0), metavar=("LEFT", "TOP"),
                   help="where the condition's top-left corner goes on the canvas, in pixels")
    p.add_argument("--prompt", action="append", default=[], help="prompt (repeatable; an image each)")
    p.add_argument("--cycles", type=int, default=3, help="cycles of one-way diffusion (1 without re-noising)")
    p.add_argument("--cycle-start", type=float, default=0.8,
                   help="the level each cycle starts from (a fraction of the training timesteps)")
    p.add_argument("--cycle-end", type=float, default=0.4,
                   help="the level each cycle ends at, re-noised from there to --cycle-start")
    p.add_argument("--preserve-until", type=float, default=0.0,
                   help="the condition region is reset while the level is at least this (0: to the end)")
    p.add_argument("--background", default="#ececec", help="the colour of the seed canvas around the condition")
    p.add_argument("--out", default="cow.png", help="output PNG (a JSON of condition fidelities is written beside it)")


def read_condition(path: str):
    """An image file as ``(3, h, w)`` in [-1, 1] at its own size; one line naming the file if it cannot be read."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from difforge.plugin_api import UsageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError):
        raise UsageError(f"cow: condition {path}: not an image file Pillow can read") from None
    return torch.from_numpy(rgb).permute(2, 0, 1) / 127.5 - 1


def run_cow(args: argparse.Namespace) -> int:
    """Sample images that keep a visual condition in its region while the prompt sets the rest (COW)."""
    import torch

    from .cow import condition_fidelity, sample_cow

    condition = read_condition(args.condition)
    backbone = load_model_arguments(args)
    prompts = [p for p in args.prompt for _ in range(args.num_samples)] or None
    position = tuple(args.position)
    result = sample_cow(backbone, prompts, condition, position=position, num_samples=args.num_samples,
                        cycles=args.cycles, cycle_start=args.cycle_start, cycle_end=args.cycle_end,
                        preserve_until=args.preserve_until, background=args.background, num_steps=args.steps,
                        sampler=args.sampler, guidance_scale=args.guidance,
                        generator=torch.Generator().manual_seed(args.seed), **_sampler_options(args))
    report = {"method": "cow", "cycles": args.cycles, "nfe": result.nfe,
              "condition_psnr": condition_fidelity(result.images, condition, position).tolist()}
    _write(result.images, report, args.out, f"cow · {args.cycles} cycles · {result.nfe} NFE")
    return 0
