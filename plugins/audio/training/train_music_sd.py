"""Train music-sd-tiny: a text-to-spectrogram diffusion model for the music world, from scratch.

Stages (seeded; about half an hour on 2 CPU cores):

1. tokenizer  CLIP BPE files spelling the music-world caption vocabulary as single tokens
              (difforge-testkit's closed-vocabulary builder)
2. data       synthesised clips -> normalised log-mel spectrograms (1 x 64 mels x 64 frames),
              the plugin's ``music-clips`` dataset
3. model      a tiny CLIP text encoder trained jointly with a pixel-space UNet2DConditionModel
              over the spectrograms (epsilon prediction, cosine noise schedule, 10 % caption
              dropout for classifier-free guidance, EMA), through ``difforge.train`` (the
              ``denoising`` objective with ``train_text_encoder``)
4. eval       samples every caption and reads tempo / register order / dynamics back with the
              analytic scorer

    python plugins/audio/training/train_music_sd.py --out DIR [--quick]

The result is a difforge backbone directory (``difforge.load_backbone(DIR)``: ``denoiser/``,
``scheduler/``, ``text_encoder/``, ``tokenizer/``) with ``metrics.json`` and a model card.
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

from difforge_audio.music import all_captions, vocabulary  # noqa: E402

MAX_LENGTH = 24
FULL = {"clips": 6000, "steps": 2400, "batch": 16, "eval_per_caption": 1, "eval_steps": 50}
QUICK = {"clips": 64, "steps": 10, "batch": 8, "eval_per_caption": 1, "eval_steps": 3}


def build_models(tokenizer):
    """The text encoder and the UNet, randomly initialised."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_LENGTH, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=1, out_channels=1, block_out_channels=(16, 32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=8, norm_num_groups=8,
    )
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False, prediction_type="epsilon")
    return text_encoder, unet, scheduler


def train_config(start: Path, clips: int, steps: int, batch: int, lr_max: float, run_dir: Path) -> dict:
    """The ``difforge.train`` config of the model: the backbone saved in ``start``, the
    ``denoising`` objective with ``train_text_encoder`` on ``clips`` clips of ``music-clips``, 10 %
    caption dropout, AdamW with warm-up over 2 % of the steps then cosine decay, gradients
    clipped at 1, EMA 0.999."""
    return {
        "model": {"pretrained": str(start)},
        "data": {"dataset": "music-clips", "options": {"count": clips, "seed": 0}, "batch_size": batch,
                 "caption_dropout": 0.1},
        "objective": {"name": "denoising", "options": {"train_text_encoder": True}},
        "train": {"steps": steps, "lr": lr_max, "lr_scheduler": "cosine", "warmup_steps": max(1, steps // 50),
                  "weight_decay": 1e-2, "max_grad_norm": 1.0, "ema": {"decay": 0.999}, "seed": 3},
        "output": {"dir": str(run_dir), "tensorboard": False, "keep_last": 1, "overwrite": True},
    }


def train(clips: int, tokenizer, steps: int, batch: int, log: dict, work: Path, lr_max: float = 1e-3,
          init: Path | None = None) -> Path:
    """Joint text encoder + UNet training on the denoising loss through ``difforge.train`` (the
    ``denoising`` objective with ``train_text_encoder`` on the ``music-clips`` dataset), from
    scratch or continued from the model saved in ``init``; returns the EMA model's directory."""
    import difforge
    from difforge import Backbone

    text_encoder, unet, scheduler = build_models(tokenizer)
    if init is not None:
        previous = difforge.load_backbone(init)
        unet.load_state_dict(previous.denoiser.state_dict())
        text_encoder.load_state_dict(previous.text_encoder.state_dict())
    start = work / "init"
    Backbone(unet, scheduler, text_encoder=text_encoder, tokenizer=tokenizer).save_pretrained(start)
    t0 = time.time()
    result = difforge.train(train_config(start, clips, steps, batch, lr_max, work / "run"))
    losses = result.losses
    log.setdefault("stages", []).append({"steps": steps, "lr": lr_max, "init": str(init) if init else None,
                                         "loss_last": float(np.mean(losses[-200:])),
                                         "seconds": round(time.time() - t0, 1)})
    log["train"] = {"steps": sum(s["steps"] for s in log["stages"]), "batch": batch, "clips": clips,
                    "seconds": round(sum(s["seconds"] for s in log["stages"]), 1),
                    "unet_params": sum(p.numel() for p in unet.parameters()),
                    "text_encoder_params": sum(p.numel() for p in text_encoder.parameters()),
                    "loss_first": float(np.mean(losses[:50])), "loss_last": float(np.mean(losses[-200:])),
                    "trained_by": "difforge.train (objective denoising, train_text_encoder, dataset music-clips)"}
    return result.output_dir / "model_ema"


def evaluate(path: Path, per_caption: int, guidance: float = 3.0, steps: int = 50, seed: int = 0,
             sampler: str = "ddpm") -> dict:
    """Sample every caption with difforge (ancestral DDPM sampling, CFG) and read the attributes
    back with the scorer."""
    import difforge
    from difforge_audio.scorer import caption_adherence

    backbone = difforge.load_backbone(path)
    prompts = all_captions() * per_caption
    g = torch.Generator().manual_seed(seed)
    specs = torch.cat([backbone.sample(prompts[i: i + 72], num_steps=steps, sampler=sampler, guidance_scale=guidance,
                                       generator=g) for i in range(0, len(prompts), 72)])
    rows = [caption_adherence(s, p) for s, p in zip(specs, prompts, strict=True)]
    result = {key: round(float(np.mean([r[key] for r in rows])), 4) for key in ("tempo", "order", "dynamics", "reward")}
    return {"guidance_scale": guidance, "sampler": sampler, "steps": steps, "seed": seed, "n": len(prompts),
            "caption_adherence": result}


def write_model_card(out: Path, log: dict, metrics: dict) -> Path:
    """README.md with data, training, wall time and measured quality."""
    t, m = log["train"], metrics["caption_adherence"]
    stages = "\n".join(f"  - stage {i}: {st['steps']} steps at peak lr {st['lr']:g}"
                       f"{' continuing stage ' + str(i - 1) + ' (--init)' if st['init'] else ' from scratch'}"
                       f", final loss {st['loss_last']:.4f}, {st['seconds'] / 60:.1f} min"
                       for i, st in enumerate(log["stages"], 1))
    text = f"""# music-sd-tiny

A tiny text-to-spectrogram diffusion model for difforge's music world, trained from scratch by
`plugins/audio/training/train_music_sd.py` (seed 0) on 2 CPU cores.

- **Data**: {t['clips']} synthesised clips (seeds 0..{t['clips'] - 1}) of the music world: 2.048 s at
  8 kHz, log-mel spectrograms of 64 mel bands (150-2500 Hz) x 64 frames, in [-1, 1].
- **Text encoder**: a CLIP text transformer ({t['text_encoder_params']:,} parameters, 2 layers, width 64)
  trained jointly with the UNet; its tokenizer spells each caption word as one token.
- **Denoiser**: `UNet2DConditionModel` over the spectrogram ({t['unet_params']:,} parameters),
  epsilon prediction, DDPM cosine schedule (1000 steps), 10 % caption dropout, EMA 0.999.
- **Training**: {t['steps']} steps, batch {t['batch']}, AdamW (warm-up + cosine per stage), {t['seconds'] / 60:.1f} min:
{stages}

## Measured quality

Every caption of the grammar, {metrics['n']} samples ({metrics['sampler'].upper()} {metrics['steps']} steps, guidance
{metrics['guidance_scale']}), read back with `difforge_audio.scorer` (which reads the generator's
own clips 100 % correctly):

| attribute | accuracy |
|---|---|
| tempo (slow / fast) | {m['tempo']:.2f} |
| register order (low then high / high then low) | {m['order']:.2f} |
| dynamics (louder / quieter / steady) | {m['dynamics']:.2f} |
| mean caption adherence | {m['reward']:.2f} |
"""
    (out / "README.md").write_text(text)
    return out / "README.md"


def main() -> None:
    """Train, save, evaluate."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (for tests)")
    parser.add_argument("--steps", type=int, default=None, help="override the training steps")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--init", default=None, help="continue from the model in this directory (a second stage)")
    args = parser.parse_args()
    budget = dict(QUICK if args.quick else FULL)
    if args.steps:
        budget["steps"] = args.steps
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from difforge import load_backbone
    from difforge_testkit import build_clip_tokenizer

    log: dict = {}
    if args.init and (Path(args.init) / "training_log.json").exists():
        log["stages"] = json.loads((Path(args.init) / "training_log.json").read_text()).get("stages", [])
    t0 = time.time()
    tokenizer = build_clip_tokenizer(out / "tokenizer", [*vocabulary(), ","], max_length=MAX_LENGTH)
    with tempfile.TemporaryDirectory() as work:  # the run's checkpoints stay out of the model folder
        trained = train(budget["clips"], tokenizer, budget["steps"], budget["batch"], log, Path(work),
                        lr_max=args.lr, init=Path(args.init) if args.init else None)
        load_backbone(trained).save_pretrained(out)
    metrics = evaluate(out, budget["eval_per_caption"], steps=budget["eval_steps"])
    log["total_seconds"] = round(time.time() - t0, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "training_log.json").write_text(json.dumps(log, indent=2))
    write_model_card(out, log, metrics)
    print(json.dumps(metrics["caption_adherence"]), f"total {log['total_seconds']} s", flush=True)


if __name__ == "__main__":
    main()
