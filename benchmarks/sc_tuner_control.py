"""SCEdit's controllable CSC-Tuner on the shapes world: does a mask given at sampling time put
the object where the mask is, and how does that compare with naming the place in the prompt?

Each training seed trains the tuner from ``examples/configs/adapters/sc-tuner-control.yaml``
(single shapes of the training split, each image's own foreground mask as the condition, dropped
10 % of the time). Evaluation masks are drawn apart from the training data: large red squares
placed left or right (``draw_scene``, jitter seeds 100 and up). Per mask, one sample is drawn
(DDIM 20 steps, guidance 4, sampling seed 0) and scored by the IoU of its foreground with the
mask. Rows:

- CSC-Tuner, mask given, prompt "a red circle" (names no place);
- the same tuner without the mask (the condition dropped, as in training);
- the base model with the place in the prompt ("a large red circle on the left"): what a user
  of the base model would do instead;
- the base model, prompt "a red circle".

Each row stores its training seed's first losses (``loss_head``), which the suite re-trains
(tests/test_adapter_training.py) to check the stored runs are the current code's.

    python benchmarks/sc_tuner_control.py [--steps 600] [--masks 8] [--seeds 0 1 2]   # ~15 minutes
    python benchmarks/sc_tuner_control.py --tables        # the stored results' table
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from worker import LOSS_HEAD, mean_std, results_arguments, stored_results, write_results  # noqa: E402

RESULTS = HERE / "results" / "sc_tuner_control.json"
CONFIG = HERE.parent / "examples" / "configs" / "adapters" / "sc-tuner-control.yaml"
SIDES = ("left", "right")


def evaluation_masks(per_side: int):
    """Foreground masks of large red squares on the left and on the right (jitter seeds 100 +),
    and each mask's side."""
    import torch

    from difforge.training.control import foreground_mask
    from difforge_zoo.shapes import draw_scene

    sides = [side for i in range(per_side) for side in SIDES]
    scenes = [draw_scene([("square", "red", side, "large")], seed=100 + i // 2) for i, side in enumerate(sides)]
    pixels = torch.stack([torch.from_numpy(s.image.copy()).permute(2, 0, 1).float() / 127.5 - 1 for s in scenes])
    return foreground_mask(pixels), sides


def mask_iou(model, prompts: list[str], masks, extra: dict | None = None) -> float:
    """Mean IoU of each sample's foreground with its mask (one sample per prompt, seed 0)."""
    import torch

    from difforge.training.control import foreground_mask

    images = model.sample(prompts, num_steps=20, guidance_scale=4.0, generator=torch.Generator().manual_seed(0),
                          extra=extra or {})
    drawn = foreground_mask(images.float())
    union = (drawn + masks - drawn * masks).sum((1, 2, 3)).clamp_min(1)
    return float(((drawn * masks).sum((1, 2, 3)) / union).mean())


def one_seed(seed: int, steps: int, masks, out: Path) -> dict:
    """Train the tuner with ``seed`` and measure it with and without the mask."""
    import difforge

    result = difforge.train(CONFIG, overrides=[f"train.seed={seed}", f"train.steps={steps}", f"output.dir={out}",
                                               "output.progress=false"])
    model = difforge.load("shapes-sd-tiny", adapters=[(result.adapter_path, 1.0)])
    prompts = ["a red circle"] * len(masks)
    row = {"seed": seed, "mask_given": mask_iou(model, prompts, masks, {"condition_map": masks}),
           "no_mask": mask_iou(model, prompts, masks), "loss_head": result.losses[:LOSS_HEAD],
           "seconds": round(result.seconds, 1)}
    print(f"seed {seed}: {row}", flush=True)
    return row


def main() -> None:
    """Train each seed, measure every row, print the table and write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="training steps per seed (the example config's)")
    parser.add_argument("--masks", type=int, default=8, help="evaluation masks per side")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="training seeds")
    results_arguments(parser, RESULTS)
    args = parser.parse_args()
    if args.tables:
        print(table(stored_results(args.out)))
        return

    import difforge

    masks, sides = evaluation_masks(args.masks)
    base = difforge.load("shapes-sd-tiny")
    baselines = {"base_place_in_prompt": mask_iou(base, [f"a large red circle on the {s}" for s in sides], masks),
                 "base_no_place": mask_iou(base, ["a red circle"] * len(masks), masks)}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_seed(seed, args.steps, masks, Path(tmp) / f"seed-{seed}") for seed in args.seeds]
    summary = {key: mean_std([r[key] for r in runs]) for key in ("mask_given", "no_mask")}
    summary["mask_given_minus_place_in_prompt"] = mean_std([r["mask_given"] - baselines["base_place_in_prompt"]
                                                            for r in runs])
    results = {"steps": args.steps, "masks": len(masks), "seeds": args.seeds, "baselines": baselines,
               "runs": runs, "summary": summary}
    write_results(results, args.out, model="shapes-sd-tiny")
    print(table(results))


def table(results: dict) -> str:
    """The markdown table of the results (docs/adapters.md quotes it)."""
    s, b = results["summary"], results["baselines"]
    n = len(results["seeds"])
    return "\n".join([
        f"| sampling ({results['masks']} masks, {n} training seeds) | mask IoU |", "|---|---|",
        f"| CSC-Tuner, mask given, \"a red circle\" | {s['mask_given'][0]:.3f} ± {s['mask_given'][1]:.3f} |",
        f"| CSC-Tuner, no mask, \"a red circle\" | {s['no_mask'][0]:.3f} ± {s['no_mask'][1]:.3f} |",
        f"| base model, place in the prompt (\"a large red circle on the left\") | {b['base_place_in_prompt']:.3f} |",
        f"| base model, \"a red circle\" | {b['base_no_place']:.3f} |"])


if __name__ == "__main__":
    main()
