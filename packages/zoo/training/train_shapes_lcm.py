"""Distil shapes-lcm-tiny: latent consistency distillation (LCM) of shapes-sd-tiny.

One ``difforge.train`` run with the ``lcm`` objective (difforge-distill): the teacher is the
committed shapes-sd-tiny, the data its UNet's training scenes, the student the same UNet with a
guidance-scale embedding, trained in full. Then the student is measured at 1, 2, 4 and 8
consistency steps (guidance 4 as its input) against the teacher at 30 DDIM steps (guidance 4,
the teacher's card) and against the simplest alternative, the teacher itself at the same 1-8
steps (DDIM and the consistency sampler, guidance 4), on the prompt sets of the teacher's card.

    python packages/zoo/training/train_shapes_lcm.py --out DIR [--quick]
    python packages/zoo/training/train_shapes_lcm.py --out DIR --eval-only   # re-measure, rewrite the card

The result is a diffusers directory with ``LCMScheduler`` (``LatentConsistencyModelPipeline``
loads it), ``clip/`` copied from the teacher, ``metrics.json`` and ``training_log.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_shapes_sd import evaluation_prompts, sample_and_score  # noqa: E402

FULL = {"steps": 600, "batch": 32, "scenes": 40000, "eval_per_prompt": 8}
QUICK = {"steps": 4, "batch": 4, "scenes": 64, "eval_per_prompt": 1}
#: sampling steps of the student's (and the teacher's few-step) measurements
STEP_COUNTS = (1, 2, 4, 8)
#: the teacher's reference setting (its model card's)
TEACHER_STEPS = 30
GUIDANCE = 4.0
#: the lcm objective's options of the committed model
LCM_OPTIONS = {"num_ddim_timesteps": 50, "guidance_scale_range": [2.0, 7.0], "guidance_embedding_dim": 256,
               "target_ema": 0.95, "loss": "huber"}


def distill_config(teacher: Path, work: Path, budget: dict, seed: int, lr: float) -> dict:
    """The ``difforge.train`` config of the distillation."""
    return {
        "model": {"pretrained": str(teacher)},
        "data": {"dataset": "shapes", "batch_size": budget["batch"],
                 "options": {"count": budget["scenes"], "seed": seed}},
        "objective": {"name": "lcm", "options": LCM_OPTIONS},
        "train": {"steps": budget["steps"], "lr": lr, "lr_scheduler": "cosine",
                  "warmup_steps": max(1, budget["steps"] // 50), "weight_decay": 0.0, "seed": seed,
                  "max_grad_norm": 1.0},
        "output": {"dir": str(work / "lcm"), "tensorboard": False, "keep_last": 1, "overwrite": True},
    }


#: samples per prompt of the card's spot check, which the test suite re-measures
SPOT_CHECK_PER_PROMPT = 2


def measure(backbone, steps: int, sampler: str, per_prompt: int, seed: int = 0) -> dict:
    """Scorer accuracies of ``backbone``'s samples of the card's prompt sets (guidance 4)."""
    started = time.perf_counter()
    scores = {name: sample_and_score(backbone, p, GUIDANCE, steps, seed, sampler=sampler) | {"n": len(p)}
              for name, p in evaluation_prompts(per_prompt).items()}
    return {"sampler": sampler, "steps": steps, "seconds": round(time.perf_counter() - started, 1), **scores}


def spot_check(student_dir: Path, teacher_dir: Path, per_prompt: int = SPOT_CHECK_PER_PROMPT, seed: int = 0) -> dict:
    """The student at 4 consistency steps and the teacher at 4 DDIM steps, at fewer samples per prompt."""
    import difforge

    return {"per_prompt": per_prompt,
            "student_4": measure(difforge.load_backbone(student_dir), 4, "consistency", per_prompt, seed),
            "teacher_ddim_4": measure(difforge.load_backbone(teacher_dir), 4, "ddim", per_prompt, seed)}


def evaluate(student_dir: Path, teacher_dir: Path, per_prompt: int, seed: int = 0) -> dict:
    """Scorer quality of the student at :data:`STEP_COUNTS` consistency steps, of the teacher at
    :data:`TEACHER_STEPS` DDIM steps and of the teacher at the student's step counts (DDIM and
    consistency sampling), per prompt set of the teacher's card, all at guidance 4; and the
    :func:`spot_check`."""
    import difforge

    student, teacher = difforge.load_backbone(student_dir), difforge.load_backbone(teacher_dir)

    def measure_at(backbone, steps: int, sampler: str) -> dict:
        return measure(backbone, steps, sampler, per_prompt, seed)

    return {"guidance_scale": GUIDANCE, "seed": seed, "spot_check": spot_check(student_dir, teacher_dir, seed=seed),
            "teacher": measure_at(teacher, TEACHER_STEPS, "ddim"),
            "student": {str(k): measure_at(student, k, "consistency") for k in STEP_COUNTS},
            "teacher_ddim": {str(k): measure_at(teacher, k, "ddim") for k in STEP_COUNTS},
            "teacher_consistency": {str(k): measure_at(teacher, k, "consistency") for k in STEP_COUNTS}}


#: the prompt sets of the card, by the name its table gives them
PROMPT_SETS = {"single_heldout_combination": "held-out combinations", "single_seen_combination": "seen combinations",
               "two_shapes_with_positions": "two shapes with positions"}


def quality_table(metrics: dict) -> str:
    """Full-prompt accuracy by prompt set for every measured setting (markdown)."""
    head = "| model | sampler | steps | UNet calls | " + " | ".join(PROMPT_SETS.values()) + " |"
    lines = [head, "|" + "---|" * (4 + len(PROMPT_SETS))]

    def row(model: str, m: dict, calls: int) -> str:
        cells = " | ".join(f"{m[key]['full_accuracy']:.3f}" for key in PROMPT_SETS)
        return f"| {model} | {m['sampler']} | {m['steps']} | {calls} | {cells} |"

    lines.append(row("teacher (shapes-sd-tiny)", metrics["teacher"], 2 * metrics["teacher"]["steps"]))
    for k in STEP_COUNTS:
        lines.append(row("**shapes-lcm-tiny**", metrics["student"][str(k)], k))
        lines.append(row("teacher", metrics["teacher_ddim"][str(k)], 2 * k))
        lines.append(row("teacher", metrics["teacher_consistency"][str(k)], 2 * k))
    return "\n".join(lines)


def write_model_card(out: Path, log: dict, metrics: dict) -> Path:
    """README.md of the model directory (:func:`card_text`)."""
    (out / "README.md").write_text(card_text(log, metrics))
    return out / "README.md"


def card_text(log: dict, metrics: dict) -> str:
    """The model card: the distillation and the measured quality."""
    o = log["options"]
    text = f"""# shapes-lcm-tiny

A latent consistency model (LCM, Luo et al. 2023) distilled from
[shapes-sd-tiny](../shapes-sd-tiny/README.md) by `packages/zoo/training/train_shapes_lcm.py`
(seed {log['seed']}): one `difforge.train` run with the `lcm` objective of difforge-distill. It
samples in 1–8 steps with the `consistency` sampler, one UNet call per step: the guidance scale
is an input of the UNet (a {o['guidance_embedding_dim']}-wide embedding of w = scale − 1 added to
its timestep embedding), not classifier-free guidance.

```python
model = difforge.load("shapes-lcm-tiny")
images = model.sample(["a red circle"], num_steps=4, sampler="consistency", guidance_scale=4.0)
pipe = LatentConsistencyModelPipeline.from_pretrained(difforge_zoo.load("shapes-lcm-tiny"))  # diffusers
```

## Distillation
Teacher: shapes-sd-tiny (frozen), classifier-free guidance with ω drawn from
{o['guidance_scale_range'][0]}–{o['guidance_scale_range'][1]} per sample, one DDIM step of its
{o['num_ddim_timesteps']}-step grid as the ODE solver; student initialised from the teacher
(the guidance projection at zero) and trained in full ({log['params'] / 1e6:.2f} M parameters);
target network an EMA ({o['target_ema']}) of the student; {o['loss']} distance. Data: {log['budget']['scenes']}
scenes of the teacher's training split. {log['steps']} steps × batch {log['budget']['batch']},
lr {log['lr']}, {log['seconds']} s on {log['threads']} CPU threads (torch {log['torch']}); final loss
{log['loss_last']:.4f}.

## Measured quality
Full-prompt accuracy of the analytic scorer (`difforge_zoo.scorer`) on the teacher card's prompt
sets (n = {metrics['student']['4']['single_heldout_combination']['n']} / {metrics['student']['4']['single_seen_combination']['n']} / {metrics['student']['4']['two_shapes_with_positions']['n']}), guidance {metrics['guidance_scale']}, seed {metrics['seed']}. The
teacher rows at few steps are the simplest alternative: the teacher sampled with as few steps
(twice the UNet calls, for its guidance).

{quality_table(metrics)}
"""
    return text


def main() -> None:
    """Distil, measure, write the model directory."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--teacher", type=Path, help="the teacher pipeline (default: the zoo's shapes-sd-tiny)")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (not a usable model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the budget's)")
    parser.add_argument("--eval-only", action="store_true", help="re-measure an existing --out and rewrite its card")
    args = parser.parse_args()
    import difforge
    import difforge_zoo

    teacher = args.teacher or difforge_zoo.load("shapes-sd-tiny")
    budget = dict(QUICK if args.quick else FULL)
    if args.steps:
        budget["steps"] = args.steps
    out = args.out
    if not args.eval_only:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        with tempfile.TemporaryDirectory() as work:
            config = distill_config(teacher, Path(work), budget, args.seed, args.lr)
            started = time.time()
            result = difforge.train(config)
            seconds = round(time.time() - started, 1)
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(result.model_path, out)
        shutil.copytree(teacher / "clip", out / "clip")
        window = max(1, min(20, len(result.losses) // 4))
        log = {"seed": args.seed, "budget": budget, "lr": args.lr, "options": LCM_OPTIONS, "steps": result.steps,
               "seconds": seconds, "loss_first": sum(result.losses[:window]) / window,
               "loss_last": sum(result.losses[-window:]) / window, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "teacher": "shapes-sd-tiny",
               "params": sum(p.numel() for p in difforge.load_backbone(out).denoiser.parameters())}
        (out / "training_log.json").write_text(json.dumps(log, indent=2))
    log = json.loads((out / "training_log.json").read_text())
    metrics = evaluate(out, teacher, log["budget"]["eval_per_prompt"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_model_card(out, log, metrics)
    print(quality_table(metrics))


if __name__ == "__main__":
    main()
