"""ms per training step: difforge's loop vs a hand-written loop doing the same work.

Both loops train the same PEFT LoRA on the same diffusers UNet of a Stable-Diffusion-shaped
pipeline (VAE encode + CLIP text encode + UNet, epsilon MSE, grad clipping, AdamW, constant LR)
from the same image folder, batch and seed. They run alternately, ROUNDS times each, in one
process; the table reports the median ms/step of each and the ratio.

    python benchmarks/train_step.py              # CPU: the tiny pipeline (2 cores: a few minutes)
    python benchmarks/train_step.py --mode gpu   # CUDA: SD 1.5 UNet architecture (random weights),
                                                 # 64x64 latents, bf16, LoRA r=16, batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent


@dataclass
class Spec:
    """One benchmark setting."""

    unet: dict
    resolution: int
    batch: int
    rank: int
    precision: str
    steps: int
    rounds: int
    warmup: int
    device: str


def cpu_spec() -> Spec:
    """The tiny pipeline of the test kit, on CPU."""
    from difforge_testkit.components import tiny_unet

    unet = dict(tiny_unet(sample_size=8).config)
    return Spec(unet=unet, resolution=32, batch=4, rank=4, precision="no", steps=25, rounds=5, warmup=3, device="cpu")


def gpu_spec() -> Spec:
    """Stable Diffusion 1.5's UNet architecture (random weights), 512 px images -> 64x64 latents."""
    unet = json.loads((HERE / "configs" / "sd15_unet.json").read_text())
    return Spec(unet=unet, resolution=512, batch=4, rank=16, precision="bf16", steps=30, rounds=3, warmup=5,
                device="cuda")


def build_pipeline(spec: Spec, path: Path) -> Path:
    """A Stable-Diffusion-shaped pipeline: tiny VAE and text encoder, the spec's UNet."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from difforge_testkit import build_clip_tokenizer
    from difforge_testkit.components import DEFAULT_WORDS, TOKENIZER_MAX_LENGTH, tiny_text_encoder, tiny_vae

    torch.manual_seed(0)
    tokenizer = build_clip_tokenizer(path / "tokenizer", DEFAULT_WORDS, TOKENIZER_MAX_LENGTH)
    unet_config = {k: v for k, v in spec.unet.items() if not k.startswith("_")}
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=tiny_text_encoder(len(tokenizer), hidden=unet_config["cross_attention_dim"]),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet_config),
        scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                                steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def difforge_round(spec: Spec, model: Path, data: Path, out: Path) -> tuple[list[float], float]:
    """Step times (s) of difforge's loop, measured between step-end callbacks, and peak memory."""
    import difforge
    from difforge.training import Trainer

    stamps: list[float] = []

    def stamp(trainer, step, logs):
        if spec.device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    config = difforge.load_config(data={
        "model": {"pretrained": str(model)},
        "data": {"dataset": "image-folder", "options": {"path": str(data), "resolution": spec.resolution},
                 "batch_size": spec.batch},
        "adapter": {"type": "lora", "options": {"rank": spec.rank, "target_modules": LORA_TARGETS}},
        "train": {"steps": spec.steps + spec.warmup, "lr": 1e-4, "max_grad_norm": 1.0, "seed": 0,
                  "mixed_precision": spec.precision, "device": spec.device},
        "output": {"dir": str(out), "tensorboard": False, "progress": False},
    })
    trainer = Trainer(config, callbacks=[stamp])
    if spec.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit()
    peak = torch.cuda.max_memory_allocated() / 2**30 if spec.device == "cuda" else float("nan")
    times = [b - a for a, b in pairwise(stamps[spec.warmup - 1 :])]
    return times, peak


def handwritten_round(spec: Spec, model: Path, data: Path) -> tuple[list[float], float]:
    """The same work written directly against diffusers + PEFT + torch, the way the diffusers
    example training scripts do it."""
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from torch.utils.data import DataLoader, RandomSampler
    from transformers import CLIPTextModel, CLIPTokenizer

    from difforge.training.data import ImageFolderDataset, collate

    device = torch.device(spec.device)
    dtype = torch.bfloat16 if spec.precision == "bf16" else torch.float32
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(model / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(model / "text_encoder", torch_dtype=dtype)
    text_encoder = text_encoder.to(device).requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(model / "vae", torch_dtype=dtype).to(device).requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(model / "unet").requires_grad_(False)
    unet.add_adapter(LoraConfig(r=spec.rank, lora_alpha=spec.rank, init_lora_weights="gaussian",
                                target_modules=LORA_TARGETS))
    unet.to(device)
    scheduler = DDPMScheduler.from_pretrained(model / "scheduler")
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    dataset = ImageFolderDataset(str(data), resolution=spec.resolution)
    loader = DataLoader(dataset, batch_size=spec.batch, sampler=RandomSampler(dataset), collate_fn=collate,
                        drop_last=True)
    generator = torch.Generator().manual_seed(0)
    alphas = scheduler.alphas_cumprod.to(device)
    stamps: list[float] = []
    if spec.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step = 0
    while step < spec.steps + spec.warmup:
        for batch in loader:
            with torch.autocast(device.type, dtype=dtype, enabled=spec.precision != "no"):
                with torch.no_grad():
                    dist = vae.encode(batch["pixel_values"].to(device, dtype)).latent_dist
                    noise = torch.randn(dist.mean.shape, generator=generator).to(device, dist.mean.dtype)
                    latents = dist.mean + dist.std * noise
                    latents = latents * vae.config.scaling_factor
                    ids = tokenizer(batch["caption"], padding="max_length", max_length=tokenizer.model_max_length,
                                    truncation=True, return_tensors="pt").input_ids.to(device)
                    text = text_encoder(ids)[0]
                noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(device)
                t = torch.randint(0, len(alphas), (len(latents),), generator=generator).to(device)
                a = alphas[t].reshape(-1, 1, 1, 1).to(latents.dtype)
                noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
                pred = unet(noisy, t, encoder_hidden_states=text).sample
                loss = F.mse_loss(pred.float(), noise.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()
            if spec.device == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            step += 1
            if step >= spec.steps + spec.warmup:
                break
    peak = torch.cuda.max_memory_allocated() / 2**30 if spec.device == "cuda" else float("nan")
    times = [b - a for a, b in pairwise(stamps[spec.warmup - 1 :])]
    return times, peak


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--rounds", type=int, default=None, help="alternations of the two loops")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    args = parser.parse_args()
    spec = cpu_spec() if args.mode == "cpu" else gpu_spec()
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--mode gpu needs CUDA")
    spec.rounds = args.rounds or spec.rounds
    spec.steps = args.steps or spec.steps
    from difforge_testkit import write_toy_images

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_pipeline(spec, root / "model")
        data = write_toy_images(root / "images", count=max(32, spec.batch * 8), resolution=spec.resolution)
        ours, theirs, peaks_ours, peaks_theirs = [], [], [], []
        for r in range(spec.rounds):
            t, p = difforge_round(spec, model, data, root / f"run{r}")
            ours += t
            peaks_ours.append(p)
            t, p = handwritten_round(spec, model, data)
            theirs += t
            peaks_theirs.append(p)
            print(f"round {r + 1}/{spec.rounds}: difforge {statistics.median(ours) * 1e3:.1f} ms, "
                  f"hand-written {statistics.median(theirs) * 1e3:.1f} ms", flush=True)
    d, h = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
    device = torch.cuda.get_device_name() if spec.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\nmode={args.mode} device={device} batch={spec.batch} LoRA r={spec.rank} precision={spec.precision} "
          f"{spec.rounds} rounds x {spec.steps} steps (after {spec.warmup} warm-up steps per round)\n")
    print("| loop | ms / step (median) | steps / s | peak GPU memory (GiB) |")
    print("|---|---|---|---|")
    def mem(peaks: list[float]) -> str:
        return f"{max(peaks):.2f}" if spec.device == "cuda" else "n/a (CPU)"

    print(f"| difforge | {d:.1f} | {1e3 / d:.2f} | {mem(peaks_ours)} |")
    print(f"| hand-written | {h:.1f} | {1e3 / h:.2f} | {mem(peaks_theirs)} |")
    print(f"| ratio difforge / hand-written | {d / h:.3f} | | |")


if __name__ == "__main__":
    main()
