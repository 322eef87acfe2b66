"""The ``difforge preference-pairs`` command."""

from __future__ import annotations

import argparse

from difforge.plugin_api import ConfigError, model_arguments


def configure_preference_pairs(p: argparse.ArgumentParser) -> None:
    """The arguments of ``difforge preference-pairs``."""
    model_arguments(p, adapters=False)
    p.add_argument("--prompts", required=True, metavar="FILE", help="text file, one prompt per line")
    p.add_argument("--reward", required=True, help="registered reward that ranks the samples (see difforge plugins)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for pairs.jsonl and images/")
    p.add_argument("--samples-per-prompt", type=int, default=4,
                   help="samples per prompt; the best and worst form a pair")
    p.add_argument("--steps", type=int, default=25, help="sampling steps")
    p.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--perturb", choices=["weak", "medium", "strong"], default=None,
                   help="also write DCPO's perturbed caption of each rejected image (with --captioner: its "
                        "perturbed description, DCPO's hybrid)")
    p.add_argument("--captioner", default=None, metavar="NAME",
                   help="registered captioner that writes each image's own caption (DCPO's captioning)")
    p.add_argument("--word-groups", default="", metavar="A,B;C,D",
                   help="words that may replace each other for --perturb, groups separated by ';'")


def run_preference_pairs(args: argparse.Namespace) -> int:
    """Sample, rank and write the pairs; prints how many were written."""
    from pathlib import Path

    from .pairs import preference_pairs

    prompts_file = Path(args.prompts)
    if not prompts_file.exists():
        raise ConfigError(f"--prompts: {prompts_file} does not exist")
    prompts = [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
    groups = [[w.strip() for w in g.split(",") if w.strip()] for g in args.word_groups.split(";") if g.strip()]
    path = preference_pairs(args.model, prompts, args.reward, args.out, samples_per_prompt=args.samples_per_prompt,
                            num_steps=args.steps, guidance_scale=args.guidance, seed=args.seed, perturb=args.perturb,
                            word_groups=groups, captioner=args.captioner)
    count = len(path.read_text().splitlines())
    print(f"wrote {count} preference pairs from {len(prompts)} prompts to {path}")
    return 0
