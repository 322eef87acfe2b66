"""Audio plugin benchmarks on the music world (needs difforge-audio installed).

1. Music ControlNet: melody accuracy, dynamics correlation and rhythm F1 of clips generated for
   held-out reference clips, uncontrolled vs each control alone vs all together vs all given on
   the first half only (with the metrics of the unspecified half).
2. Tango 2: preference pairs from the base model (clips from each training prompt and from
   prompts with misordered / missing events), Diffusion-DPO with a LoRA through `difforge
   train`, and caption-event adherence (register order) on held-out prompts before vs after,
   per seed.

    python benchmarks/audio.py [--controls 32] [--seeds 0 1 2] [--skip-controls] [--skip-dpo]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "recipes"


def controls_benchmark(count: int, steps: int) -> dict:
    """The Music ControlNet table over ``count`` held-out references."""
    from difforge_audio.evaluation import evaluate_controls, format_table, references
    from difforge_audio.pipeline import MusicPipeline

    t0 = time.time()
    table = evaluate_controls(MusicPipeline.from_pretrained(), references(count), num_steps=steps)
    print(format_table(table), flush=True)
    return {"references": count, "steps": steps, "table": table, "seconds": round(time.time() - t0, 1)}


def dpo_benchmark(seeds: list[int], steps: int, per_prompt: int, work: Path) -> dict:
    """Tango 2 pairs once, then DPO per seed; held-out caption adherence before and after."""
    import difforge
    from difforge_audio.evaluation import caption_adherence_table
    from difforge_audio.models import load_base
    from difforge_audio.preferences import build_audio_preferences

    def prompts(name: str) -> list[str]:
        return [line for line in (CONFIGS / name).read_text().splitlines() if line.strip()]

    t0 = time.time()
    pairs = build_audio_preferences(load_base(), prompts("prompts_train.txt") * 3, work / "pairs",
                                    samples_per_prompt=2, perturbed_per_prompt=2, seed=0)
    num_pairs = sum(1 for line in pairs.read_text().splitlines() if line.strip())
    pairs_seconds = round(time.time() - t0, 1)
    print(f"{num_pairs} pairs in {pairs_seconds} s", flush=True)
    heldout = prompts("prompts_heldout.txt")
    before = caption_adherence_table(load_base(), heldout, per_prompt)
    rows = []
    for seed in seeds:
        t1 = time.time()
        out = work / f"dpo-{seed}"
        result = difforge.train(CONFIGS / "tango2-dpo.yaml", overrides=[
            f"data.options.path={work / 'pairs'}", f"output.dir={out}", f"train.seed={seed}",
            f"train.steps={steps}", "output.progress=false"])
        after = caption_adherence_table(difforge.load("music-sd-tiny", adapters=[(result.adapter_path, 1.0)]),
                                        heldout, per_prompt)
        rows.append({"seed": seed, "after": after, "train_seconds": round(result.seconds, 1),
                     "seconds": round(time.time() - t1, 1)})
        print(f"seed {seed}: before {before} after {after}", flush=True)
    summary = {key: {"before": before[key], "after_mean": float(np.mean([r["after"][key] for r in rows])),
                     "after_std": float(np.std([r["after"][key] for r in rows]))} for key in before}
    return {"pairs": num_pairs, "pairs_seconds": pairs_seconds, "train_steps": steps, "per_prompt": per_prompt,
            "heldout_prompts": len(heldout), "rows": rows, "summary": summary}


def write_results(results: dict, out: str | Path) -> Path:
    """Write the results as JSON, atomically (an interrupted run leaves the last complete file)."""
    import json

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(results, indent=2))
    partial.replace(out)
    return out


def main() -> None:
    """Run the benchmarks and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--controls", type=int, default=32, help="held-out reference clips for the ControlNet table")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (DDPM, as the model cards)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="DPO seeds")
    parser.add_argument("--dpo-steps", type=int, default=200, help="DPO training steps")
    parser.add_argument("--per-prompt", type=int, default=8, help="samples per held-out prompt")
    parser.add_argument("--skip-controls", action="store_true")
    parser.add_argument("--skip-dpo", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "audio.json"))
    args = parser.parse_args()
    results: dict = {}
    if not args.skip_controls:
        results["controlnet"] = controls_benchmark(args.controls, args.steps)
    if not args.skip_dpo:
        with tempfile.TemporaryDirectory() as tmp:
            results["tango2_dpo"] = dpo_benchmark(args.seeds, args.dpo_steps, args.per_prompt, Path(tmp))
        print("| attribute | before | after (mean ± std over seeds) |\n|---|---|---|")
        for key, row in results["tango2_dpo"]["summary"].items():
            print(f"| {key} | {row['before']:.3f} | {row['after_mean']:.3f} ± {row['after_std']:.3f} |")
    write_results(results, args.out)


if __name__ == "__main__":
    main()
