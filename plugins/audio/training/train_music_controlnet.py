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
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from difforge_audio.codec import MelCodec  # noqa: E402
from difforge_audio.controlnet import ControlNetDenoiser, controlnet_from_unet  # noqa: E402
from difforge_audio.controls import Controls, extract_controls, random_masks  # noqa: E402
from difforge_audio.music import random_clip  # noqa: E402

FULL = {"clips": 4000, "steps": 1600, "batch": 16, "eval_clips": 16, "eval_steps": 50, "scales": (1.0, 2.0, 3.0)}
QUICK = {"clips": 32, "steps": 4, "batch": 4, "eval_clips": 2, "eval_steps": 3, "scales": (1.0, 2.0)}
VALIDATION_SEED = 2_000_000  # scale-selection references: neither training clips nor the test references


def warmup_cosine(optimizer, steps: int):
    """Linear warm-up over 2 % of the steps, then cosine decay to zero."""
    warmup = max(1, steps // 50)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps)))


def make_data(count: int, seed_offset: int = 500_000):
    """Spectrograms, captions and full controls of ``count`` clips (seeds disjoint from the
    evaluation references)."""
    codec = MelCodec()
    specs, captions, controls = [], [], []
    for i in range(count):
        clip = random_clip(seed_offset + i)
        spec = codec.encode(clip.audio)
        specs.append(spec)
        captions.append(clip.caption)
        controls.append(extract_controls(spec, codec))
    return torch.from_numpy(np.stack(specs)), captions, controls


def train(backbone, specs, captions, controls, steps: int, batch: int, log: dict):
    """Train a ControlNet on the frozen base's denoising loss."""
    unet, text_encoder = backbone.denoiser, backbone.text_encoder
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    controlnet = controlnet_from_unet(unet)
    model = ControlNetDenoiser(unet, controlnet)
    with torch.no_grad():
        states = torch.cat([backbone.encode_prompts(captions[i:i + 256]) for i in range(0, len(captions), 256)])
        null = backbone.encode_prompts([""])[0]
    n_mels = specs.shape[2]
    opt = torch.optim.AdamW(controlnet.parameters(), lr=5e-4, weight_decay=1e-2)
    lr = warmup_cosine(opt, steps)
    alphas = backbone.scheduler.alphas_cumprod
    g = torch.Generator().manual_seed(5)
    rng = np.random.default_rng(5)
    t0, losses = time.time(), []
    for step in range(steps):
        idx = torch.randint(0, len(specs), (batch,), generator=g)
        x0, cond = specs[idx], states[idx].clone()
        cond[torch.rand(batch, generator=g) < 0.1] = null
        images = torch.stack([Controls(controls[i].melody, controls[i].dynamics, controls[i].rhythm,
                                                    random_masks(rng)).image(n_mels) for i in idx.tolist()])
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, len(alphas), (batch,), generator=g)
        a = alphas[t].reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model(x_t, t, encoder_hidden_states=cond, controlnet_cond=images).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(controlnet.parameters(), 1.0)
        opt.step(), lr.step(), opt.zero_grad()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}/{steps} loss {np.mean(losses[-100:]):.4f} "
                  f"({(time.time() - t0) / (step + 1):.3f} s/step)", flush=True)
    log["train"] = {"steps": steps, "batch": batch, "clips": len(specs), "seconds": round(time.time() - t0, 1),
                    "params": sum(p.numel() for p in controlnet.parameters()),
                    "loss_first": float(np.mean(losses[:50])), "loss_last": float(np.mean(losses[-100:]))}
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
    t0 = time.time()
    if args.evaluate_only:
        from difforge_audio.models import load_controlnet

        controlnet = load_controlnet(out)
        log = json.loads((out / "training_log.json").read_text())
    else:
        specs, captions, controls = make_data(budget["clips"])
        log["data_seconds"] = round(time.time() - t0, 1)
        print(f"{len(specs)} clips with controls in {log['data_seconds']} s", flush=True)
        controlnet = train(backbone, specs, captions, controls, budget["steps"], budget["batch"], log)
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
