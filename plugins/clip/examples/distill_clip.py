"""SDS-CLIP on the shapes world in about three minutes on 2 CPU cores: tune the zoo CLIP's
LayerNorms with the score-distillation loss through the frozen shapes-sd-tiny, tune them with
the contrastive loss alone (the baseline), and print both beside the zoo CLIP.

    python plugins/clip/examples/distill_clip.py [--out outputs/clip-example] [--steps 150]

One seed only: the benchmark (benchmarks/clip_distill.py) has the 3-seed table.
"""

from __future__ import annotations

import argparse

import torch

import difforge
from difforge_clip.distill import distill_config, evaluate_clip, format_table


def main() -> None:
    """Train both, evaluate on the held-out quadruples and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/clip-example")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--count", type=int, default=32, help="benchmark items per kind")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = {"zoo CLIP": evaluate_clip("shapes-sd-tiny", count=args.count)}
    for method in ("contrastive", "sds-clip"):
        config = distill_config(method, f"{args.out}/{method}", steps=args.steps, overwrite=True)
        rows[method] = evaluate_clip(difforge.train(config).model_path, count=args.count)
    print(format_table(rows))


if __name__ == "__main__":
    main()
