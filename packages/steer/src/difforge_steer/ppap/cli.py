"""``difforge train-guiders`` and ``difforge guide``: PPAP from the command line."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from difforge.plugin_api import load_model_arguments, model_arguments


def _alphas_cumprod(backbone):
    """ᾱ_t of the model's noise schedule; one line for a model without one (flow matching)."""
    from difforge.plugin_api import UsageError

    alphas = getattr(backbone.scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise UsageError(f"PPAP guides variance-preserving (DDPM-family) models; {type(backbone.scheduler).__name__} "
                         "has no alphas_cumprod")
    return alphas


def _check_channels(classifier, backbone, flag: str, path: str) -> None:
    """One line when the classifier does not read the model's denoiser space."""
    from difforge.plugin_api import UsageError

    channels = backbone.sample_shape()[0]
    if classifier.config.in_channels != channels:
        raise UsageError(f"{flag} {path}: the classifier reads {classifier.config.in_channels} channels, the model "
                         f"denoises {channels}")


def _load_classifier(path: str):
    from difforge.plugin_api import UsageError

    from .classifier import LatentClassifier

    if not (Path(path) / "config.json").is_file():
        raise UsageError(f"--classifier {path}: not a classifier folder (no config.json; make one with "
                         "LatentClassifier.save_pretrained)")
    return LatentClassifier.from_pretrained(path).eval()


def configure_train(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge train-guiders``."""
    from .experts import PPAPConfig

    defaults = PPAPConfig()
    model_arguments(p, adapters=False)
    p.add_argument("--classifier", required=True,
                   help="the clean classifier's folder (LatentClassifier.save_pretrained): it labels the samples")
    p.add_argument("--out", required=True, help="output folder of the guider (must not exist)")
    p.add_argument("--samples", type=int, default=512, help="clean samples the model generates for the transfer")
    p.add_argument("--sample-steps", type=int, default=25, help="sampling steps of those samples")
    p.add_argument("--experts", type=int, default=defaults.num_experts, help="timestep ranges, one expert each")
    p.add_argument("--rank", type=int, default=defaults.rank, help="LoRA rank of each expert")
    p.add_argument("--steps", type=int, default=defaults.steps, help="distillation steps per expert")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def run_train(args: argparse.Namespace) -> int:
    """Generate clean samples, distil the experts, save the guider and report per-range agreement."""
    import torch

    from difforge.plugin_api import UsageError, atomic_save_json

    from .experts import PPAPConfig, distill_experts, expert_agreement, generate_clean_samples

    out = Path(args.out)
    if out.exists():
        raise UsageError(f"--out {out}: already exists; guiders are never overwritten")
    classifier = _load_classifier(args.classifier)
    backbone = load_model_arguments(args)
    alphas = _alphas_cumprod(backbone)
    _check_channels(classifier, backbone, "--classifier", args.classifier)
    generator = torch.Generator().manual_seed(args.seed)
    clean = generate_clean_samples(backbone, args.samples, num_steps=args.sample_steps, generator=generator)
    config = PPAPConfig(num_experts=args.experts, rank=args.rank, steps=args.steps)
    guider = distill_experts(classifier, clean, alphas, config, generator=generator)
    held_out = generate_clean_samples(backbone, min(256, args.samples), num_steps=args.sample_steps,
                                      generator=generator)
    report = {"config": config.model_dump(), "samples": args.samples,
              "agreement": expert_agreement(guider, held_out, alphas, generator=generator)}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    guider.save_pretrained(partial)
    atomic_save_json(report, partial / "report.json")
    partial.rename(out)  # the guider appears whole or not at all
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


def configure_guide(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge guide``."""
    model_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--guider", help="a PPAP guider folder (difforge train-guiders)")
    source.add_argument("--classifier", help="a clean classifier folder, used on noisy inputs as is (the naive "
                        "baseline)")
    p.add_argument("--target", required=True, help="the class to guide toward (one of the classifier's labels)")
    p.add_argument("--scale", type=float, default=8.0, help="classifier guidance scale")
    p.add_argument("--prompt", default="", help="prompt of a text model (default: the empty prompt)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    p.add_argument("--num-samples", type=int, default=8, help="samples to draw")
    p.add_argument("--steps", type=int, default=25, help="sampling steps")
    p.add_argument("--sampler", default="ddim", help="a registered sampler (ddim, dpmpp_2m, ...)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default="guided.png", help="output PNG grid")


def run_guide(args: argparse.Namespace) -> int:
    """Sample with classifier guidance toward ``--target``."""
    import torch

    from difforge.plugin_api import save_grid

    from .experts import ExpertGuider
    from .guidance import classifier_guidance

    guider = ExpertGuider.from_pretrained(args.guider) if args.guider else _load_classifier(args.classifier)
    classifier = guider.clean if args.guider else guider
    targets = classifier.class_index([args.target] * args.num_samples)
    backbone = load_model_arguments(args)
    _check_channels(classifier, backbone, "--guider" if args.guider else "--classifier", args.guider or args.classifier)
    guidance = classifier_guidance(guider, targets, args.scale, _alphas_cumprod(backbone))
    prompts = [args.prompt] * args.num_samples if backbone.conditioning == "text" else None
    images = backbone.sample(prompts, num_samples=args.num_samples, num_steps=args.steps, sampler=args.sampler,
                             guidance_scale=args.guidance, guidance=guidance,
                             generator=torch.Generator().manual_seed(args.seed))
    print(f"wrote {save_grid(images, args.out, title=f'guided toward {args.target} (scale {args.scale})')}")
    return 0
