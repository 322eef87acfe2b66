"""FreezeAsGuard on the shapes world: does a learned freezing mask hamper full fine-tuning on the
protected domain more than on the legal one, compared with no mask and a random mask freezing
the same share of parameters?

Protected domain: 5 images of a red heart captioned "a red sks circle". Legal domain: 5 images
of a yellow square (a colour-shape pair held out of pretraining) captioned "a yellow zwx
circle". The mask is learned by ``difforge_guard.freeze_guard`` from the two domains; each domain is
then fully fine-tuned under each mask (``train.freeze_mask``) for the same steps, and its
fidelity is the share of samples of its caption that the scorer reads as one red heart / one
yellow square.

    python benchmarks/freeze_guard.py [--steps 100] [--samples 32] [--ratio 0.5] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from adapters import accuracy, write_concept_images  # noqa: E402
from worker import mean_std, write_results  # noqa: E402

DOMAINS = {"protected": ("heart", "a red sks circle", ("red", "heart")),
           "legal": ("yellow-square", "a yellow zwx circle", ("yellow", "square"))}


def fine_tune(images: Path, caption: str, mask: Path | None, steps: int, out: Path, seed: int):
    """Full fine-tuning of shapes-sd-tiny's UNet on one domain, respecting ``mask``."""
    import difforge

    train = {"steps": steps, "lr": 1e-4, "seed": seed}
    if mask is not None:
        train["freeze_mask"] = str(mask)
    return difforge.train({
        "model": {"pretrained": "shapes-sd-tiny"},
        "data": {"dataset": "image-folder", "options": {"path": str(images), "caption": caption}, "batch_size": 4},
        "train": train,
        "output": {"dir": str(out), "progress": False, "tensorboard": False, "keep_last": 1},
    })


def one_seed(work: Path, images: dict[str, Path], seed: int, args) -> dict:
    """Learn a mask and draw a random one (seeded), fine-tune each domain under each mask."""
    import difforge
    from difforge_guard import freeze_guard, random_freeze_mask

    t0 = time.time()
    learned = work / f"learned-{seed}.json"
    freeze_guard("shapes-sd-tiny", images["protected"], images["legal"], out=learned, ratio=args.ratio,
                          steps=args.mask_steps, protected_caption=DOMAINS["protected"][1],
                          legal_caption=DOMAINS["legal"][1], seed=seed)
    mask_seconds = round(time.time() - t0, 1)
    frozen = json.loads(learned.read_text())["frozen"]
    sizes = {n: p.numel() for n, p in difforge.load("shapes-sd-tiny").denoiser.named_parameters()}
    share = sum(sizes[n] for n in frozen) / sum(sizes.values())
    randomised = work / f"random-{seed}.json"
    randomised.write_text(json.dumps({"frozen": random_freeze_mask(sizes, share, seed=seed)}))
    rows = {}
    for name, mask in (("no mask", None), ("random mask", randomised), ("FreezeAsGuard mask", learned)):
        rows[name] = {}
        for d, (_, caption, expect) in DOMAINS.items():
            result = fine_tune(images[d], caption, mask, args.steps, work / f"{name}-{d}-{seed}", seed)
            rows[name][d] = accuracy(difforge.load(result.model_path), caption, expect, args.samples, 0)
        print(f"seed {seed}: {name} {rows[name]}", flush=True)
    return {"seed": seed, "frozen_share": share, "frozen_tensors": len(frozen), "mask_seconds": mask_seconds,
            "fidelity": rows}


def main() -> None:
    """Learn the masks, fine-tune each domain under each mask, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="full fine-tuning steps per run")
    parser.add_argument("--samples", type=int, default=32, help="samples per fidelity measurement")
    parser.add_argument("--ratio", type=float, default=0.5, help="share of parameters the mask freezes")
    parser.add_argument("--mask-steps", type=int, default=40, help="FreezeAsGuard mask (releaser) steps")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2],
                        help="each seed learns its own mask, draws its own random mask and fine-tunes with it")
    parser.add_argument("--out", default=str(HERE / "results" / "freeze_guard.json"))
    args = parser.parse_args()

    import difforge

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = {d: write_concept_images(work / d, concept) for d, (concept, _, _) in DOMAINS.items()}
        base = {d: accuracy(difforge.load("shapes-sd-tiny"), caption, expect, args.samples, 0)
                for d, (_, caption, expect) in DOMAINS.items()}
        runs = [one_seed(work, images, seed, args) for seed in args.seeds]
    rows = [{"mask": "base model (no fine-tuning)", **{d: [v, 0.0] for d, v in base.items()}}]
    for name in runs[0]["fidelity"]:
        rows.append({"mask": name, **{d: mean_std([r["fidelity"][name][d] for r in runs]) for d in DOMAINS}})
    shares = [r["frozen_share"] for r in runs]
    print(f"\nmasks: {min(shares):.1%}-{max(shares):.1%} of the UNet's parameters frozen, learned in "
          f"{statistics.mean(r['mask_seconds'] for r in runs):.0f} s each; {len(runs)} seeds, {args.samples} samples")
    print("| mask | protected fidelity (red heart) | legal fidelity (yellow square) |\n|---|---|---|")
    for row in rows:
        print(f"| {row['mask']} | {row['protected'][0]:.3f} ± {row['protected'][1]:.3f} | "
              f"{row['legal'][0]:.3f} ± {row['legal'][1]:.3f} |")
    write_results({"steps": args.steps, "samples": args.samples, "ratio": args.ratio, "mask_steps": args.mask_steps,
                   "seeds": args.seeds, "rows": rows, "runs": runs}, args.out, model="shapes-sd-tiny")


if __name__ == "__main__":
    main()
