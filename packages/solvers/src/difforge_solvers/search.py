"""``python -m difforge_solvers.search``: fit DC-Solver's compensation ratios for a model at
one or more step counts and write them where ``--sampler-option dc_ratios=FILE`` reads them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def read_prompts(path: str | Path, limit: int) -> list[str]:
    """The first ``limit`` non-empty lines of a prompts file; one line naming the file if it has none."""
    from difforge.plugin_api import UsageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such prompts file")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()][:limit]
    if not prompts:
        raise UsageError(f"{path}: no prompts in the file")
    return prompts


def main(argv: list[str] | None = None) -> int:
    """Fit and save DC-Solver ratios; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m difforge_solvers.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory, zoo name or hub id (as difforge sample)")
    parser.add_argument("--prompts", default=None, help="text file of calibration prompts, one per line "
                                                        "(text-conditioned models)")
    parser.add_argument("--limit", type=int, default=10, help="calibration prompts (or noises) used (default 10)")
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="step counts to fit ratios for")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration noise")
    parser.add_argument("--fine-steps", type=int, default=200,
                        help="evenly spaced points of the ground-truth grid over the training timesteps")
    parser.add_argument("--out", required=True, help="ratios JSON to write")
    args = parser.parse_args(argv)

    import difforge
    from difforge.plugin_api import UsageError

    from .dc_solver import save_dc_ratios, search_dc_ratios

    try:
        prompts = read_prompts(args.prompts, args.limit) if args.prompts else None
        backbone = difforge.load(args.model).eval()
        ratios = {steps: search_dc_ratios(backbone, prompts, steps, guidance_scale=args.guidance,
                                          num_samples=args.limit, seed=args.seed, fine_steps=args.fine_steps)
                  for steps in args.steps}
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    path = save_dc_ratios(args.out, ratios, model=str(args.model), guidance_scale=args.guidance,
                          calibration=len(prompts) if prompts else args.limit, seed=args.seed)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
