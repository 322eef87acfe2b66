"""The ``difforge clip-distill`` and ``difforge clip-eval`` sub-commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .benchmark import SPLITS
from .distill import METHODS


def configure_eval(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge clip-eval``."""
    p.add_argument("--clip", action="append", default=[], metavar="NAME_OR_PATH",
                   help="a CLIP to evaluate: a saved student folder or a model name (repeatable; "
                        "default: the zoo's CLIP, shapes-sd-tiny)")
    p.add_argument("--teacher", default=None, metavar="MODEL",
                   help="also score with this text-to-image model as a diffusion classifier "
                        "(e.g. shapes-sd-tiny; slow)")
    p.add_argument("--benchmark", choices=["quadruples"], default="quadruples",
                   help="quadruples: Winoground-style quadruples with ARO- and SugarCrepe-style items")
    p.add_argument("--split", choices=SPLITS, default="heldout",
                   help="heldout: every item holds a held-out colour-shape combination; fresh: seen combinations")
    p.add_argument("--count", type=int, default=64, help="items per kind")
    p.add_argument("--seed", type=int, default=0, help="benchmark seed")
    p.add_argument("--noise", type=int, default=24, help="(t, noise) draws per pair for --teacher (as the benchmark)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="write the benchmark as files (images, winoground.jsonl, aro.json) and exit")


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate the CLIPs (and the teacher) and print one table."""
    from . import benchmark as world
    from .distill import evaluate_clip, format_table
    from .evaluation import compositional

    if args.count < 1:
        raise SystemExit("difforge: error: --count must be at least 1")
    if args.export:
        out = world.export(world.build(args.count, args.seed, args.split), args.export)
        print(f"wrote {out}")
        return 0
    rows = {}
    for reference in args.clip or ["shapes-sd-tiny"]:
        rows[str(reference)] = evaluate_clip(reference, count=args.count, split=args.split, benchmark_seed=args.seed)
    if args.teacher:
        import difforge

        from .teacher import DiffusionClassifier

        classifier = DiffusionClassifier(difforge.load(args.teacher), num_noise=args.noise)
        rows[f"teacher {args.teacher}"] = compositional(classifier, world.build(args.count, args.seed, args.split))
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def configure_distill(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge clip-distill``."""
    p.add_argument("--method", choices=list(METHODS), default="sds-clip",
                   help="sds-clip (LayerNorms), sds-clip-lora, contrastive (LayerNorms, no distillation), "
                        "negclip (whole CLIP, hard negatives), diva (vision tower, image-only diffusion feedback)")
    p.add_argument("--steps", type=int, default=200, help="training steps")
    p.add_argument("--batch-size", type=int, default=32, help="image-caption pairs per step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (negclip uses at most 1e-5)")
    p.add_argument("--sds-weight", type=float, default=None, help="SDS-CLIP's λ (default: the objective's)")
    p.add_argument("--seed", type=int, default=0, help="training seed (also picks the training scenes)")
    p.add_argument("--count", type=int, default=64, help="benchmark items per kind for the evaluation")
    p.add_argument("--out", default="outputs/clip", help="the run folder: <out>/<method>-seed<seed>")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in the same folder")


def run_distill(args: argparse.Namespace) -> int:
    """Train, then print the zoo CLIP and the tuned CLIP side by side."""
    import difforge

    from .distill import distill_config, evaluate_clip, format_table

    options = {"sds_weight": args.sds_weight} if args.sds_weight is not None else None
    if options and not args.method.startswith("sds-clip"):
        raise SystemExit(f"difforge: error: --sds-weight applies to sds-clip, not {args.method}")
    out = Path(args.out) / f"{args.method}-seed{args.seed}"
    result = difforge.train(distill_config(args.method, out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                           seed=args.seed, options=options, overwrite=args.overwrite))
    rows = {"zoo CLIP": evaluate_clip("shapes-sd-tiny", count=args.count),
            args.method: evaluate_clip(result.model_path, count=args.count)}
    table = format_table(rows)
    (out / "evaluation.json").write_text(json.dumps(rows, indent=2))
    print(table)
    print(f"tuned CLIP: {result.model_path} (transformers CLIPModel layout; "
          "difforge_clip.student.ClipEncoder.from_pretrained reads it)")
    return 0
