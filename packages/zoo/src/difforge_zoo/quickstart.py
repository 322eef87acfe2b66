"""``difforge quickstart``: teach shapes-sd-tiny a held-out concept with DreamBooth + LoRA.

Five images of a shape the model has never seen (a red heart) are captioned with a rare
identifier and the closest known class ("a red sks circle"); DreamBooth's prior preservation
keeps the class ("a red circle") as it was. The scorer measures both, before and after.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

#: shipped inside the package, so the command works from a regular (non-editable) install too
QUICKSTART_CONFIG = Path(__file__).resolve().parent / "configs" / "quickstart.yaml"


def _scores(backbone, prompt: str, expect: tuple[str, str], n: int, seed: int) -> tuple[torch.Tensor, list[bool]]:
    """Samples for ``prompt`` and, per sample, whether the scorer sees exactly one object of
    (colour, shape) ``expect``."""
    from .scorer import detect

    generator = torch.Generator().manual_seed(seed)
    images = backbone.sample([prompt] * n, num_steps=30, guidance_scale=4.0, generator=generator)
    hits = []
    for image in images:
        found = detect(image)
        hits.append(len(found) == 1 and (found[0].colour, found[0].shape) == expect)
    return images, hits


def run_quickstart(out: str | Path, config: str | Path = QUICKSTART_CONFIG, samples: int = 32, seed: int = 0,
                   overrides: list[str] | None = None) -> dict:
    """Run the quickstart; returns the metrics also written to ``<out>/metrics.json``."""
    from PIL import Image

    import difforge
    from difforge.plugin_api import save_grid, write_report

    from .shapes import random_scene

    out = Path(out)
    instance_dir = out / "instance_images"
    instance_dir.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        scene = random_scene(10_000 + i, split="concepts", num_objects=1, shapes=["heart"], colours=["red"])
        Image.fromarray(scene.image).save(instance_dir / f"heart_{i}.png")
    # the quickstart re-makes its own folder: a second run replaces the first (class images are kept)
    result = difforge.train(config, overrides=[f"data.options.path={instance_dir}", f"output.dir={out / 'run'}",
                                               "output.overwrite=true", *(overrides or [])])
    run_config = difforge.load_config(result.output_dir / "config.yaml")
    instance_prompt = run_config.data.options["caption"]
    class_prompt = run_config.objective.options["class_prompt"]
    base = difforge.load(run_config.model.pretrained)
    tuned = difforge.load(run_config.model.pretrained, adapters=[(result.adapter_path, 1.0)])
    rows, marks, labels, metrics = [], [], [], {}
    shown = min(8, samples)  # columns of the before/after grid
    for label, model in (("base", base), ("dreambooth", tuned)):
        images, fidelity = _scores(model, instance_prompt, ("red", "heart"), samples, seed)
        class_images, prior = _scores(model, class_prompt, ("red", "circle"), samples, seed + 1)
        metrics[label] = {"concept_fidelity": float(np.mean(fidelity)), "class_prior_accuracy": float(np.mean(prior))}
        rows += [images[:shown], class_images[:shown]]
        marks += [fidelity[:shown], prior[:shown]]
        name = "base model" if label == "base" else "DreamBooth LoRA"
        labels += [f"{name}: “{instance_prompt}” (want a red heart)", f"{name}: “{class_prompt}” (want a red circle)"]
    tolerance = 0.15
    metrics.update({
        "instance_prompt": instance_prompt, "class_prompt": class_prompt, "samples_per_prompt": samples,
        "concept_fidelity_gain": metrics["dreambooth"]["concept_fidelity"] - metrics["base"]["concept_fidelity"],
        "class_prior_change": metrics["dreambooth"]["class_prior_accuracy"] - metrics["base"]["class_prior_accuracy"],
        "class_prior_tolerance": tolerance, "train_seconds": round(result.seconds, 1), "steps": result.steps,
    })
    metrics["class_prior_preserved"] = abs(metrics["class_prior_change"]) <= tolerance
    order = [0, 2, 1, 3]  # the instance prompt before/after, then the class prompt before/after
    grid = save_grid(torch.cat([rows[i] for i in order]), out / "before_after.png", columns=shown,
                     row_labels=[labels[i] for i in order],
                     column_labels=[f"sample {k + 1}" for k in range(shown)],
                     verdicts=[v for i in order for v in marks[i]],
                     title="before / after DreamBooth + LoRA (mark: the scorer's verdict, green right, red wrong)")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report = write_report(result.output_dir, title="difforge quickstart: DreamBooth + LoRA on shapes-sd-tiny",
                          figures=[(f"Before and after, {shown} of the scored samples per prompt; the two prompts "
                                    "are sampled with different seeds", grid)],
                          metrics={k: v for k, v in metrics.items() if k != "paths"},
                          notes=f"{samples} samples per prompt, DDIM 30 steps, guidance 4, scored by the shapes "
                                "world's analytic scorer.")
    metrics["paths"] = {"lora": str(result.adapter_path), "grid": str(grid), "metrics": str(out / "metrics.json"),
                        "report": str(report)}
    return metrics


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge quickstart``."""
    parser.add_argument("--out", default="outputs/quickstart", help="output folder")
    parser.add_argument("--config", default=str(QUICKSTART_CONFIG), help="the DreamBooth run config")
    parser.add_argument("--samples", type=int, default=32, help="samples per prompt for the metrics")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Run the quickstart and print where its outputs are."""
    metrics = run_quickstart(args.out, args.config, args.samples, overrides=args.overrides)
    b, d = metrics["base"], metrics["dreambooth"]
    print(f"concept fidelity ({metrics['instance_prompt']!r} shows a red heart): "
          f"base {b['concept_fidelity']:.2f} -> DreamBooth {d['concept_fidelity']:.2f}")
    print(f"class prior ({metrics['class_prompt']!r} shows a red circle): "
          f"base {b['class_prior_accuracy']:.2f} -> DreamBooth {d['class_prior_accuracy']:.2f} "
          f"({'preserved' if metrics['class_prior_preserved'] else 'NOT preserved'}, "
          f"tolerance {metrics['class_prior_tolerance']})")
    for name, path in metrics["paths"].items():
        print(f"{name}: {path}")
    return 0
