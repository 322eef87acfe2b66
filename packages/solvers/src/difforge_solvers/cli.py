"""``difforge restore``: restore an image with a mean-reverting diffusion model (MR Sampler)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SAMPLERS = ("mrs", "euler-maruyama", "euler-ode")


def configure_restore(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge restore``."""
    p.add_argument("--model", required=True, help="an MR diffusion model: a local directory or a plugin-resolved "
                                                  "name (shapes-sr-mr)")
    p.add_argument("--input", required=True, help="the degraded image (centre-cropped square); one smaller than the "
                                                  "model's images is taken as low-resolution and upsampled "
                                                  "bicubically first")
    p.add_argument("--sampler", choices=SAMPLERS, default="mrs",
                   help="mrs (MR Sampler), euler-maruyama (IR-SDE's reverse SDE) or euler-ode (default: mrs)")
    p.add_argument("--steps", type=int, default=10, help="network evaluations (default 10)")
    p.add_argument("--prediction", choices=("data", "noise"), default="data", help="MR Sampler's parameterisation")
    p.add_argument("--order", type=int, choices=(1, 2), default=2, help="MR Sampler's order (default 2)")
    p.add_argument("--sde", action="store_true", help="MR Sampler's SDE solver instead of the ODE's")
    p.add_argument("--num-samples", type=int, default=1, help="restorations drawn (from different noise)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--boundary", default=None, metavar="FILE",
                   help="start every sample from this noise (an optimal boundary condition, safetensors of "
                        "difforge_solvers.boundary.save_boundary) instead of a seeded draw; ODE samplers only")
    p.add_argument("--reference", default=None, help="the clean image, to report each restoration's PSNR")
    p.add_argument("--out", default="restored.png",
                   help="output PNG (several samples: -0, -1, ... before the suffix); a grid and a JSON "
                        "report beside it")


def read_image(path: str, role: str):
    """An image file as ``(1, 3, s, s)`` in [-1, 1] (the core's reader: its short side, centre-cropped
    square); one line naming the flag and the file if it cannot be read."""
    from difforge.plugin_api import read_image as read_square_image

    return read_square_image(path, name=f"{role} {path}").unsqueeze(0)


def load_model(reference: str):
    """The network and schedule of ``--model``; one line if it is not an MR diffusion model."""
    from difforge.plugin_api import UsageError, resolve_model_path

    from .mean_reverting import load_mean_reverting

    try:
        return load_mean_reverting(resolve_model_path(reference))
    except (FileNotFoundError, ValueError, OSError) as error:
        raise UsageError(f"restore: --model {reference}: {error}") from None


def run_restore(args: argparse.Namespace) -> int:
    """Restore ``--input`` ``--num-samples`` times and write the PNGs, a grid and a report."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from difforge.plugin_api import UsageError, atomic_save_json, atomic_write, save_grid, to_uint8

    from .mean_reverting import MeanRevertingDenoiser
    from .mrs import sample_mr_euler, sample_mr_euler_maruyama, sample_mrs

    if args.steps < 1 or args.num_samples < 1:
        raise UsageError("restore: --steps and --num-samples must be at least 1")
    if args.boundary and (args.sampler == "euler-maruyama" or args.sde):
        raise UsageError("restore: --boundary starts the ODE; the SDE samplers add noise of their own")
    network, schedule = load_model(args.model)
    size = network.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    degraded = read_image(args.input, "--input")
    if degraded.shape[-2:] != size:
        degraded = F.interpolate(degraded, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
    mean = degraded.expand(args.num_samples, -1, -1, -1).contiguous()
    generator = torch.Generator().manual_seed(args.seed)
    denoise = MeanRevertingDenoiser(network, schedule, mean)
    noise = None
    if args.boundary:
        from .boundary import load_boundary

        noise = load_boundary(args.boundary)
        if tuple(noise.shape) != tuple(mean.shape[1:]):
            raise UsageError(f"restore: --boundary {args.boundary}: shape {tuple(noise.shape)}, the model restores "
                             f"{tuple(mean.shape[1:])}")
        noise = noise.expand_as(mean)
    with torch.no_grad():
        start = schedule.terminal(mean, generator=generator, noise=noise)
        if args.sampler == "mrs":
            restored = sample_mrs(denoise, start, mean, schedule, args.steps, prediction=args.prediction,
                                  order=args.order, stochastic=args.sde, generator=generator)
        elif args.sampler == "euler-maruyama":
            restored = sample_mr_euler_maruyama(denoise, start, mean, schedule, args.steps, generator=generator)
        else:
            restored = sample_mr_euler(denoise, start, mean, schedule, args.steps)
    restored = restored.clamp(-1, 1)
    out = Path(args.out)
    paths = [out] if args.num_samples == 1 else [out.with_stem(f"{out.stem}-{i}") for i in range(args.num_samples)]
    pixels = to_uint8(restored)
    for path, image in zip(paths, pixels, strict=True):
        atomic_write(path, lambda p, image=image: Image.fromarray(image).save(p, format="PNG"))
    report = {"model": args.model, "input": args.input, "sampler": args.sampler, "nfe": args.steps,
              "boundary": args.boundary, "outputs": [str(p) for p in paths]}
    if args.sampler == "mrs":
        report.update(prediction=args.prediction, order=args.order, sde=args.sde)
    if args.reference:
        clean = read_image(args.reference, "--reference")
        if clean.shape[-2:] != size:
            raise UsageError(f"restore: --reference {args.reference}: {tuple(clean.shape[-2:])} pixels, the model "
                             f"restores {size}")
        mse = ((restored - clean) / 2).pow(2).flatten(1).mean(1)
        report["psnr"] = {"input": _psnr(((degraded - clean) / 2).pow(2).mean()).item(),
                          "restored": _psnr(mse).tolist()}
    grid = save_grid(torch.cat([degraded, restored]), out.with_name(f"{out.stem}.grid.png"),
                     columns=len(restored) + 1, title=f"input · {args.sampler} at {args.steps} NFE")
    atomic_save_json(report, out.with_suffix(".json"))
    print(json.dumps(report, indent=2))
    print(f"wrote {', '.join(str(p) for p in paths)} and {grid}")
    return 0


def _psnr(mse):
    import torch

    return 10 * torch.log10(1 / mse.clamp_min(1e-10))
