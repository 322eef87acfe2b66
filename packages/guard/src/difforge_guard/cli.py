"""The ``difforge freeze-guard`` command."""

from __future__ import annotations

import argparse

from difforge.plugin_api import model_arguments


def configure(p: argparse.ArgumentParser) -> None:
    """The arguments of ``difforge freeze-guard``."""
    model_arguments(p, adapters=False)
    p.add_argument("--protected", required=True, metavar="DIR", help="image folder of the domain to protect")
    p.add_argument("--protected-caption", default=None,
                   help="caption for every protected image (default: sidecar .txt)")
    p.add_argument("--legal", required=True, metavar="DIR", help="image folder of a legal domain to keep adaptable")
    p.add_argument("--legal-caption", default=None, help="caption for every legal image (default: sidecar .txt)")
    p.add_argument("--ratio", type=float, default=0.3,
                   help="share of the denoiser's parameters to freeze (whole tensors)")
    p.add_argument("--steps", type=int, default=30, help="mask (releaser) steps")
    p.add_argument("--user-steps", type=int, default=5, help="simulated fine-tuning steps before each mask step")
    p.add_argument("--resolution", type=int, default=32, help="image resolution")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default="freeze_mask.json", help="where to write the mask (use it as train.freeze_mask)")


def run(args: argparse.Namespace) -> int:
    """Learn the mask and write it; prints what was frozen."""
    from .mask import freeze_guard

    mask = freeze_guard(args.model, args.protected, args.legal, out=args.out, ratio=args.ratio, steps=args.steps,
                        user_steps=args.user_steps, protected_caption=args.protected_caption,
                        legal_caption=args.legal_caption,
                        resolution=args.resolution, seed=args.seed)
    last = mask.history[-1]
    print(f"froze {len(mask.frozen)} tensors ({args.ratio:.0%} of the parameters); at the last mask step: "
          f"protected loss {last['protected_loss']:.4f}, legal loss {last['legal_loss']:.4f}; wrote {args.out}")
    return 0
