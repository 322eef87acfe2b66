"""Train music-controlnet-tiny: Music ControlNet (melody, dynamics, rhythm) over music-sd-tiny.

The base model stays frozen. Controls are extracted from each training clip with librosa
(:func:`difforge_audio.controls.extract_controls`); each training sample gets a random subset
of them, each possibly given on only part of the timeline (:func:`random_masks`), so that one
ControlNet serves any subset of controls and partial specification, as in the paper. Captions
are kept (10 % dropped) so text and controls combine.

    python plugins/audio/training/train_music_controlnet.py --base DIR --out DIR [--quick]

Writes a diffusers ``ControlNetModel`` directory with ``metrics.json`` (the control table)
and a model card.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

FULL = {"clips": 4000, "steps": 1600, "batch": 16, "eval_clips": 16, "eval_steps": 50, "scales": (1.0, 2.0, 3.0)}
QUICK = {"clips": 32, "steps": 4, "batch": 4, "eval_clips": 2, "eval_steps": 3, "scales": (1.0, 2.0)}
VALIDATION_SEED = 2_000_000  # scale-selection references: neither training clips nor the test references


def train_config(base: str, clips: int, steps: int, batch: int, run_dir: Path) -> dict:
    """The ``difforge.train`` config of the ControlNet: the ``controlnet`` objective over the base
    model ``base`` on ``clips`` clips of ``music-controls``, 10 % caption dropout, AdamW with
    warm-up over 2 % of the steps then cosine decay, gradients clipped at 1."""
    from difforge_audio.controlnet import CONDITIONING_EMBEDDING
    from difforge_audio.controls import CONTROL_CHANNELS

    return {
        "model": {"pretrained": base},
        "data": {"dataset": "music-controls", "options": {"count": clips, "seed_offset": 500_000},
                 "batch_size": batch, "caption_dropout": 0.1},
        "objective": {"name": "controlnet", "options": {"conditioning_channels": CONTROL_CHANNELS,
                                                         "conditioning_embedding_out_channels": list(CONDITIONING_EMBEDDING)}},
        "train": {"steps": steps, "lr": 5e-4, "lr_scheduler": "cosine", "warmup_steps": max(1, steps // 50),
                  "weight_decay": 1e-2, "max_grad_norm": 1.0, "seed": 5},
        "output": {"dir": str(run_dir), "tensorboard": False, "keep_last": 1, "overwrite": True},
    }


def train(base: str, clips: int, steps: int, batch: int, work: Path, log: dict):
    """Train a ControlNet on the frozen base's denoising loss through ``difforge.train`` (the
    ``controlnet`` objective on the ``music-controls`` dataset); returns it, loaded from the run."""
    from diffusers import ControlNetModel

    import difforge

    t0 = time.time()
    result = difforge.train(train_config(base, clips, steps, batch, work))
    controlnet = ControlNetModel.from_pretrained(result.model_path)
    losses = result.losses
    log["train"] = {"steps": steps, "batch": batch, "clips": clips, "seconds": round(time.time() - t0, 1),
                    "params": sum(p.numel() for p in controlnet.parameters()),
                    "loss_first": float(np.mean(losses[:50])), "loss_last": float(np.mean(losses[-100:])),
                    "trained_by": "difforge.train (objective controlnet, dataset music-controls)"}
    return controlnet.eval()


def select_conditioning_scale(backbone, controlnet, scales, count: int, steps: int, guidance: float):
    """The ControlNet conditioning scale that follows the controls best on validation references:
    the mean, over melody / dynamics / rhythm alone and all together, of the metrics of the
    controls given. Returns ``(scale, {scale: score})``."""
    from difforge_audio.evaluation import CONDITIONS, METRICS, evaluate_controls, references
    from difforge_audio.pipeline import MusicPipeline

    followed = {"melody": ("melody_accuracy",), "dynamics": ("dynamics_correlation",), "rhythm": ("rhythm_f1",),
                "all": METRICS}
    refs = references(count, seed=VALIDATION_SEED)
    scores = {}
    for scale in scales:
        table = evaluate_controls(MusicPipeline(backbone, controlnet, conditioning_scale=scale), refs,
                                  {name: CONDITIONS[name] for name in followed}, num_steps=steps, guidance_scale=guidance)
        scores[scale] = float(np.mean([np.mean([table[name][m] for m in ms]) for name, ms in followed.items()]))
        print(f"conditioning scale {scale}: validation score {scores[scale]:.3f}", flush=True)
    return max(scores, key=scores.get), scores


def write_model_card(out: Path, log: dict, metrics: dict) -> Path:
    """README.md: data, training, wall time and the control table."""
    from difforge_audio.evaluation import format_table

    t = log["train"]
    scale_rows = "\n".join(f"| {scale} | {score:.3f} |" for scale, score in metrics["scale_selection"].items())
    text = f"""# music-controlnet-tiny

Music ControlNet for `music-sd-tiny`, trained by `plugins/audio/training/train_music_controlnet.py`
(seed 5) on 2 CPU cores with the base model frozen.

- **Controls** (extracted with librosa from each clip): melody (top chroma pitch class per frame,
  drawn on the mel bands of that pitch class in every octave), dynamics (frame energy in dB, Savitzky-Golay smoothed), rhythm (onset
  activations), plus one mask channel per control. Random subsets and random time spans are given
  during training, so any subset, partially specified in time, is supported.
- **Model**: diffusers `ControlNetModel.from_unet` ({t['params']:,} parameters), conditioning encoder
  at the spectrogram's resolution.
- **Training**: {t['clips']} clips, {t['steps']} steps, batch {t['batch']}, AdamW lr 5e-4, {t['seconds'] / 60:.1f} min;
  loss {t['loss_first']:.3f} -> {t['loss_last']:.3f}.

## Conditioning scale

Chosen on {metrics['n']} validation clips (seeds from {VALIDATION_SEED:,}, neither training nor test clips): the mean,
over melody / dynamics / rhythm alone and all together, of the metrics of the controls given.

| conditioning scale | validation score |
|---|---|
{scale_rows}

Chosen: **{metrics['conditioning_scale']}**. For the embedded model `MusicPipeline`'s default
(`DEFAULT_CONDITIONING_SCALE`) is this value (a test checks they agree); `difforge audio-generate
--control-scale` overrides it.

## Measured ({metrics['n']} held-out reference clips, their captions, {metrics['sampler'].upper()} {metrics['steps']} steps, guidance {metrics['guidance_scale']}, conditioning scale {metrics['conditioning_scale']})

{format_table(metrics['table'])}
"""
    (out / "README.md").write_text(text)
    return out / "README.md"


def main() -> None:
    """Train, save, evaluate."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="music-sd-tiny", help="base model name or directory")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (for tests)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="re-evaluate the ControlNet already in --out (and rewrite its card)")
    args = parser.parse_args()
    budget = QUICK if args.quick else FULL
    torch.manual_seed(0)
    from difforge_audio.evaluation import evaluate_controls, references
    from difforge_audio.models import load_base
    from difforge_audio.pipeline import MusicPipeline

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = load_base(args.base)
    log: dict = {}
    if args.evaluate_only:
        from difforge_audio.models import load_controlnet

        controlnet = load_controlnet(out)
        log = json.loads((out / "training_log.json").read_text())
    else:
        with tempfile.TemporaryDirectory() as work:  # the run's checkpoints stay out of the model folder
            controlnet = train(args.base, budget["clips"], budget["steps"], budget["batch"], Path(work) / "run", log)
        controlnet.save_pretrained(out, safe_serialization=True)
        (out / "training_log.json").write_text(json.dumps(log, indent=2))
    steps, guidance, t_eval = budget["eval_steps"], 3.0, time.time()
    scale, selection = select_conditioning_scale(backbone, controlnet, budget["scales"], budget["eval_clips"], steps,
                                                 guidance)
    table = evaluate_controls(MusicPipeline(backbone, controlnet, conditioning_scale=scale),
                              references(budget["eval_clips"]), num_steps=steps, guidance_scale=guidance)
    metrics = {"n": budget["eval_clips"], "sampler": "ddpm", "steps": steps, "guidance_scale": guidance,
               "conditioning_scale": scale, "scale_selection": selection, "table": table}
    log["eval_seconds"] = round(time.time() - t_eval, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "training_log.json").write_text(json.dumps(log, indent=2))
    write_model_card(out, log, metrics)
    from difforge_audio.evaluation import format_table

    print(format_table(table), flush=True)


if __name__ == "__main__":
    main()
