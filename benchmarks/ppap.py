"""PPAP (practical plug-and-play guidance) against guiding with the clean classifier on the shapes world.

A row of table 3 of the steering issue. shapes-sd-tiny samples from the empty prompt (DDIM 25
steps, no classifier-free guidance), and a colour classifier steers the colour of what it
draws. Per seed: a clean classifier of the model's latents is trained on world scenes with
their true colours (packages/steer/examples/shapes_colour_classifier.py), the model generates
clean samples from noise of another seed (the unlabelled data of the data-free transfer), and
from them the guiders are distilled:

| method | guider |
|---|---|
| base | none (the empty prompt's own colours) |
| clean | the clean classifier on the noisy x_t, as if it were clean (the naive off-the-shelf use) |
| single | one LoRA guider for every timestep, distilled data-free (the paper's single noise-aware guider) |
| ppap | five LoRA experts, one per fifth of the timesteps, distilled data-free (PPAP) |

The single guider is trained as many steps as the five experts together. Each method guides
toward every one of the six colours, from evaluation noise disjoint from the transfer's, and is
measured by the analytic scorer: the target rate (share of detected objects drawn in the target
colour; an image with no object counts 0), the hit rate (images with at least one object of the
target colour) and the object rate (images with an object at all: guidance must not erase them).

    python benchmarks/ppap.py            # 3 seeds (~30 min on 2 CPU cores)
    python benchmarks/ppap.py --tables   # print the tables of the results file
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker import mean_std, results_arguments, stored_results, write_results  # noqa: E402

RESULTS = HERE / "results" / "ppap.json"
EXAMPLE = HERE.parent / "packages" / "steer" / "examples" / "shapes_colour_classifier.py"
STEPS = 25
METHODS = ("base", "clean", "single", "ppap")
METRICS = ("target_rate", "hit_rate", "object_rate")


def colour_example():
    """The example script's module (the shapes world's clean colour classifier)."""
    spec = importlib.util.spec_from_file_location("shapes_colour_classifier", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def colour_scores(images, target: str) -> dict[str, float]:
    """Target, hit and object rates of ``images`` (pixels in [-1, 1]) for colour ``target``."""
    from difforge_zoo.scorer import detect

    target_rates, hits, objects = [], [], []
    for image in images:
        colours = [d.colour for d in detect(image)]
        target_rates.append(colours.count(target) / len(colours) if colours else 0.0)
        hits.append(float(target in colours))
        objects.append(float(bool(colours)))
    return {"target_rate": sum(target_rates) / len(images), "hit_rate": sum(hits) / len(images),
            "object_rate": sum(objects) / len(images)}


def guiders(backbone, seed: int, args) -> dict:
    """The clean classifier and the two distilled guiders of ``seed``, with their agreement tables."""
    import torch

    from difforge_steer.ppap import PPAPConfig, distill_experts, expert_agreement, generate_clean_samples

    example = colour_example()
    classifier = example.train_colour_classifier(backbone, count=args.classifier_scenes, steps=args.classifier_steps,
                                                 seed=seed)
    held_out = example.colour_dataset(backbone, 1000, seed=seed + 10_000)
    generator = torch.Generator().manual_seed(1000 + seed)
    clean = generate_clean_samples(backbone, args.transfer_samples, num_steps=STEPS, generator=generator)
    alphas = backbone.scheduler.alphas_cumprod
    ppap = distill_experts(classifier, clean, alphas, PPAPConfig(num_experts=5, steps=args.expert_steps),
                           generator=generator)
    single = distill_experts(classifier, clean, alphas, PPAPConfig(num_experts=1, steps=5 * args.expert_steps),
                             generator=generator)
    check = generate_clean_samples(backbone, args.check_samples, num_steps=STEPS,
                                   generator=torch.Generator().manual_seed(3000 + seed))
    agreement = {name: expert_agreement(guider, check, alphas, ppap.boundaries, torch.Generator().manual_seed(seed))
                 for name, guider in (("ppap", ppap), ("single", single))}
    return {"clean": classifier, "single": single, "ppap": ppap, "agreement": agreement,
            "classifier_accuracy": example.colour_accuracy(classifier, *held_out)}


def guided_rows(backbone, seed: int, made: dict, scales: list[float], per_colour: int) -> list[dict]:
    """Every method at every scale toward every colour, from the evaluation noise of ``seed``."""
    import torch

    from difforge_steer.ppap import classifier_guidance

    labels = made["clean"].labels
    rows = []
    for method in METHODS:
        for scale in ([0.0] if method == "base" else scales):
            start = time.perf_counter()
            per_target = {}
            for index, target in enumerate(labels):
                guider = made["clean" if method == "base" else method]
                targets = torch.full((per_colour,), index, dtype=torch.long)
                guidance = classifier_guidance(guider, targets, scale, backbone.scheduler.alphas_cumprod)
                generator = torch.Generator().manual_seed(5000 + 100 * seed + index)
                images = backbone.sample([""] * per_colour, num_steps=STEPS, guidance=guidance, generator=generator)
                per_target[target] = colour_scores(images, target)
            row = {"method": method, "scale": scale, "seed": seed, "per_target": per_target,
                   "seconds": round(time.perf_counter() - start, 1),
                   **{m: sum(v[m] for v in per_target.values()) / len(per_target) for m in METRICS}}
            print(json.dumps({k: v for k, v in row.items() if k != "per_target"}), flush=True)
            rows.append(row)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds of each (method, scale)."""
    keys = sorted({(row["method"], row["scale"]) for row in rows}, key=lambda k: (METHODS.index(k[0]), k[1]))
    summary = []
    for method, scale in keys:
        chosen = [row for row in rows if row["method"] == method and row["scale"] == scale]
        summary.append({"method": method, "scale": scale, "seeds": len(chosen),
                        **{m: mean_std([row[m] for row in chosen]) for m in METRICS}})
    return summary


def tables(results: dict) -> str:
    """The results as Markdown tables."""
    lines = [f"Colour guidance from the empty prompt, {results['per_colour']} images per colour and seed, "
             f"{len(results['seeds'])} seeds (mean ± std)", "",
             "| method | scale | target rate | hit rate | object rate |", "|---|---|---|---|---|"]
    for row in results["summary"]:
        cells = [f"{row[m][0]:.3f} ± {row[m][1]:.3f}" for m in METRICS]
        lines.append(f"| {row['method']} | {row['scale']:g} | " + " | ".join(cells) + " |")
    lines += ["", "Agreement with the clean classifier's label of the clean sample, given the noised sample "
              "(mean over seeds)", "", "| timesteps | clean classifier | single guider | PPAP expert |",
              "|---|---|---|---|"]
    for i, window in enumerate(results["agreement"]["ranges"]):
        agreement = results["agreement"]
        lines.append(f"| {window[0]}-{window[1]} | {agreement['clean'][i]:.3f} | {agreement['single'][i]:.3f} "
                     f"| {agreement['ppap'][i]:.3f} |")
    lines += ["", f"clean classifier held-out accuracy: {results['classifier_accuracy'][0]:.3f} ± "
              f"{results['classifier_accuracy'][1]:.3f}"]
    return "\n".join(lines)


def agreement_summary(per_seed: list[dict]) -> dict:
    """The per-range agreement of the clean classifier, the single guider and the PPAP experts,
    averaged over seeds."""
    ranges = [row["timesteps"] for row in per_seed[0]["ppap"]]
    out = {"ranges": ranges, "clean": [], "single": [], "ppap": []}
    for i in range(len(ranges)):
        out["clean"].append(sum(s["ppap"][i]["clean classifier"] for s in per_seed) / len(per_seed))
        for name in ("ppap", "single"):
            out[name].append(sum(s[name][i]["guider"] for s in per_seed) / len(per_seed))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--scales", nargs="+", type=float, default=[4.0, 16.0], help="classifier guidance scales")
    parser.add_argument("--per-colour", type=int, default=8, help="images per target colour, method and seed")
    parser.add_argument("--classifier-scenes", type=int, default=4000, help="clean classifier training scenes")
    parser.add_argument("--classifier-steps", type=int, default=800, help="clean classifier training steps")
    parser.add_argument("--transfer-samples", type=int, default=512, help="generated samples of the transfer")
    parser.add_argument("--check-samples", type=int, default=128, help="generated samples the agreement is measured on")
    parser.add_argument("--expert-steps", type=int, default=300, help="distillation steps per PPAP expert")
    results_arguments(parser, RESULTS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.tables:
        print(tables(stored_results(out)))
        return
    import torch

    import difforge

    torch.set_num_threads(2)
    backbone = difforge.load("shapes-sd-tiny").eval()
    started = time.perf_counter()
    rows, agreements, accuracies = [], [], []
    for seed in args.seeds:
        made = guiders(backbone, seed, args)
        agreements.append(made["agreement"])
        accuracies.append(made["classifier_accuracy"])
        rows += guided_rows(backbone, seed, made, args.scales, args.per_colour)
    results = {"steps": STEPS, "seeds": args.seeds, "scales": args.scales, "per_colour": args.per_colour,
               "classifier_scenes": args.classifier_scenes, "classifier_steps": args.classifier_steps,
               "transfer_samples": args.transfer_samples,
               "expert_steps": args.expert_steps, "check_samples": args.check_samples,
               "classifier_accuracy": mean_std(accuracies), "classifier_accuracy_per_seed": accuracies,
               "wall_seconds": round(time.perf_counter() - started), "rows": rows, "summary": summarise(rows),
               "agreement": agreement_summary(agreements)}
    write_results(results, out, model="shapes-sd-tiny")
    print(tables(results))



if __name__ == "__main__":
    main()
