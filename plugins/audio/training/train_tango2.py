"""Tango 2 on music-sd-tiny (Majumder et al., 2024): preference pairs from the base model's own
clips, where the loser misses or misorders the caption's events, then Diffusion-DPO with a LoRA
through ``difforge train`` (``plugins/audio/recipes/tango2-dpo.yaml``), then caption adherence
on held-out prompts before vs after.

Stages (seeded; about 25 minutes on 2 CPU cores):

1. pairs   ``build_audio_preferences`` over ``prompts_train.txt`` x 3: per prompt 2 clips from the
           prompt and 2 from event-perturbed prompts, scored against the prompt; best vs worst
2. dpo     ``difforge.train(tango2-dpo.yaml)``: LoRA rank 8 on the UNet's attention and
           feed-forward layers, beta 2000, 200 steps, batch 8
3. eval    ``prompts_heldout.txt`` (captions no pair was built from), 8 clips each, DDPM 50 steps,
           guidance 3, read back with the analytic scorer, base vs base + LoRA

    python plugins/audio/training/train_tango2.py --out DIR [--pairs DIR] [--quick]

The result is the LoRA (``pytorch_lora_weights.safetensors``, diffusers layout) with
``metrics.json``, ``training_log.json`` and a model card; the embedded copy is
``difforge_audio/models/music-sd-tiny-tango2``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "plugins" / "audio" / "recipes"
FULL = {"repeats": 3, "dpo_steps": 200, "batch": 8, "per_prompt": 8, "eval_steps": 50, "sample_steps": 50, "margin": 0.2}
QUICK = {"repeats": 1, "dpo_steps": 4, "batch": 2, "per_prompt": 1, "eval_steps": 4, "sample_steps": 4, "margin": 0.01}


def read_prompts(name: str) -> list[str]:
    """The captions of a prompts file in ``plugins/audio/recipes``."""
    return [line.strip() for line in (CONFIGS / name).read_text().splitlines() if line.strip()]


def write_model_card(out: Path, metrics: dict, log: dict) -> Path:
    """README.md: data, training, wall time and the before / after table."""
    rows = "\n".join(f"| {name} | {metrics['before'][key]:.3f} | {metrics['after'][key]:.3f} |"
                     for key, name in (("tempo", "tempo"), ("order", "event order (low / high notes)"),
                                       ("dynamics", "dynamics"), ("reward", "mean caption adherence")))
    text = f"""# music-sd-tiny-tango2

A LoRA for `music-sd-tiny` trained with **Tango 2**'s recipe (audio preference optimisation:
Diffusion-DPO on pairs whose rejected clip misses or misorders the caption's events) by
`plugins/audio/training/train_tango2.py` (seed 0) on 2 CPU cores.

```python
from difforge_audio.models import TANGO2, load_base
backbone = load_base(adapters=[(TANGO2, 1.0)])      # music-sd-tiny + this LoRA
```
or `difforge audio-generate --adapter music-sd-tiny-tango2 --prompt "..."`.

- **Pairs**: {log['pairs']} pairs from {log['pair_prompts']} prompts (`prompts_train.txt` x {log['repeats']}), built from the
  base model's own clips ({log['pairs_seconds'] / 60:.1f} min). Per prompt, 2 clips from the prompt and 2 from
  prompts whose events are swapped or dropped, all scored against the prompt by the analytic
  scorer; the pair is the best clip of the prompt against the worst clip, kept when they differ
  by at least {log['margin']}.
- **DPO**: `difforge train plugins/audio/recipes/tango2-dpo.yaml`: LoRA rank 8 on the attention and
  feed-forward projections, Diffusion-DPO beta 2000, {log['dpo_steps']} steps, batch {log['batch']}, lr 1e-4,
  the reference is the base with the LoRA disabled ({log['dpo_seconds'] / 60:.1f} min, final loss {log['final_loss']:.3f}).

## Measured

{metrics['heldout_prompts']} held-out prompts (no pair was built from them) x {metrics['per_prompt']} clips, {metrics['sampler'].upper()}
{metrics['steps']} steps, guidance {metrics['guidance_scale']}, read back with `difforge_audio.scorer`:

| attribute | base | base + this LoRA |
|---|---|---|
{rows}

`plugins/audio/benchmarks/audio.py` repeats the DPO stage over 3 seeds.
"""
    (out / "README.md").write_text(text)
    return out / "README.md"


def main() -> None:
    """Build pairs (or reuse them), train the LoRA, evaluate, write the model card."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--pairs", default=None, help="reuse the pairs in this directory instead of building them")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (for tests)")
    args = parser.parse_args()
    budget = QUICK if args.quick else FULL

    import difforge
    from difforge_audio.evaluation import caption_adherence_table
    from difforge_audio.models import load_base
    from difforge_audio.preferences import build_audio_preferences

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = read_prompts("prompts_train.txt")
    if args.quick:
        prompts = prompts[:12]
    log: dict = {"margin": budget["margin"], "repeats": budget["repeats"], "pair_prompts": len(prompts) * budget["repeats"]}
    t0 = time.time()
    if args.pairs:
        pairs = Path(args.pairs)
        log["pairs_from"] = str(pairs)
    else:
        pairs = out / "pairs"
        build_audio_preferences(load_base(), prompts * budget["repeats"], pairs, samples_per_prompt=2,
                                perturbed_per_prompt=2, num_steps=budget["sample_steps"],
                                min_margin=budget["margin"], seed=0)
    log["pairs"] = len(difforge.read_pairs(pairs)[1])
    log["pairs_seconds"] = round(time.time() - t0, 1)
    print(f"{log['pairs']} pairs in {log['pairs_seconds']} s", flush=True)

    result = difforge.train(CONFIGS / "tango2-dpo.yaml", overrides=[
        f"data.options.path={pairs}", f"output.dir={out / 'run'}", "output.overwrite=true", "train.seed=0",
        f"train.steps={budget['dpo_steps']}", f"data.batch_size={budget['batch']}", "output.progress=false"])
    shutil.copy(Path(result.adapter_path) / "pytorch_lora_weights.safetensors", out)
    summary = json.loads((out / "run" / "train_summary.json").read_text())
    log.update(dpo_steps=budget["dpo_steps"], batch=budget["batch"], dpo_seconds=round(result.seconds, 1), final_loss=summary["final_loss"])
    print(f"DPO: {budget['dpo_steps']} steps in {log['dpo_seconds']} s, final loss {summary['final_loss']:.4f}", flush=True)

    heldout = read_prompts("prompts_heldout.txt")
    evaluate = dict(per_prompt=budget["per_prompt"], num_steps=budget["eval_steps"])
    before = caption_adherence_table(load_base(), heldout, **evaluate)
    after = caption_adherence_table(difforge.load("music-sd-tiny", adapters=[(out, 1.0)]), heldout, **evaluate)
    metrics = {"heldout_prompts": len(heldout), "per_prompt": budget["per_prompt"], "sampler": "ddpm",
               "steps": budget["eval_steps"], "guidance_scale": 3.0, "seed": 0, "before": before, "after": after}
    log["total_seconds"] = round(time.time() - t0, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "training_log.json").write_text(json.dumps(log, indent=2))
    write_model_card(out, metrics, log)
    shutil.rmtree(out / "run")
    print(json.dumps({"before": before, "after": after}), f"total {log['total_seconds']} s", flush=True)


if __name__ == "__main__":
    main()
