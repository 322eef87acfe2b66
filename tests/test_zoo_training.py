"""shapes-sd-tiny's training script trains every component through ``difforge.train``, and each
stage's run computes what the script's hand-written loops computed before (commit 07c205c).

The replay tests record (``difforge_testkit.recording_objective``) the batches a library run
read, the state of its generator before each step and its initial weights, and feed them to the
old loop's arithmetic (copied below from the old script): the losses and the trained weights
agree to float tolerance. What the
library changed on purpose, and the replay therefore takes from the library run, is stated in
each test: the data order (epoch permutations instead of indices drawn with replacement), the
random stream (the run's generator instead of one per stage), the LR schedule (diffusers'
warm-up + cosine instead of the script's own ``warmup_cosine``) and the UNet's latents
(posterior samples instead of cached posterior means).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from helpers import ROOT, plugin_module
from safetensors.torch import load_file

import difforge
from difforge.plugins import register_plugin
from difforge.training.autoencoder import AutoencoderObjective
from difforge.training.objectives import DenoisingObjective
from difforge_testkit import build_clip_tokenizer, recording_objective, snapshot, update_difference
from difforge_zoo.clip_pretraining import ClipContrastiveObjective

SCRIPT = ROOT / "packages" / "zoo" / "training" / "train_shapes_sd.py"
sys.path.insert(0, str(SCRIPT.parent))
import train_shapes_sd  # noqa: E402

STEPS = 6
RECORDING = {"recorded-clip-contrastive": recording_objective(ClipContrastiveObjective),
             "recorded-autoencoder": recording_objective(AutoencoderObjective),
             "recorded-denoising": recording_objective(DenoisingObjective)}


def test_quick_run_trains_every_component_through_difforge(tmp_path):
    out = tmp_path / "model"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    log = json.loads((out / "training_log.json").read_text())
    for stage, objective in (("clip", "clip-contrastive"), ("vae", "autoencoder"), ("unet", "denoising")):
        assert log[stage]["trained_by"] == f"difforge.train (objective {objective}, dataset shapes)"
        assert log[stage]["loss_last"] < log[stage]["loss_first"], stage
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert pipe.text_encoder.config.num_hidden_layers == 1  # --text-layers 1
    assert pipe.vae.config.scaling_factor != pytest.approx(0.18215)  # measured on the UNet's latents
    clip = load_file(out / "clip" / "model.safetensors")
    embedding = "text_model.embeddings.token_embedding.weight"
    # the CLIP stage trained the pipeline's own text encoder
    assert torch.equal(clip[embedding], pipe.text_encoder.state_dict()["embeddings.token_embedding.weight"])
    assert not list(out.rglob("checkpoint-*"))
    assert (out / "README.md").exists() and json.loads((out / "metrics.json").read_text())["steps"] == 3


# ---------------------------------------------------------------------------------------- replay
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The script's untrained pipeline (its real component shapes), saved once."""
    root = tmp_path_factory.mktemp("shapes-init")
    script = train_shapes_sd
    tokenizer = build_clip_tokenizer(root / "tokenizer", script.VOCABULARY, script.MAX_LENGTH)
    train_shapes_sd.build_pipeline(tokenizer, 16, 0).save_pretrained(root / "init")
    register_plugin(plugin_module("recording-objectives", difforge_register_objectives=lambda: RECORDING),
                    "recording-objectives")
    return root / "init", tokenizer


def library_run(tmp_path, model, objective, **options):
    """One stage through difforge.train; returns (result, the recording objective)."""
    config = train_shapes_sd.stage_config("stage", model, tmp_path, objective=objective, steps=STEPS, **options)
    config["output"]["progress"] = False
    result = difforge.train(config)
    return result, RECORDING[objective["name"]].runs[-1]


def old_optimizer(params, lr, weight_decay):
    """The old script's AdamW, with the library's LR schedule (diffusers' warm-up + cosine)."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return optimizer, get_scheduler("cosine", optimizer, num_warmup_steps=max(1, STEPS // 50), num_training_steps=STEPS)


def assert_same(library_losses, old_losses, library_params, old_params, start):
    assert library_losses == pytest.approx(old_losses, rel=1e-5, abs=1e-6)
    assert library_losses[-1] != pytest.approx(library_losses[0], rel=1e-3)  # the weights moved
    assert update_difference(library_params, old_params, start) < 1e-3


def test_clip_stage_replays_the_old_loop(pipeline, tmp_path):
    init, tokenizer = pipeline
    result, run = library_run(tmp_path, init, {"name": "recorded-clip-contrastive"}, batch=16, lr=1e-3,
                              weight_decay=0.1, seed=1, data={"options": {"count": 64, "seed": 0}})
    model = run.initial["clip"]
    start = snapshot(clip=model)
    opt, sched = old_optimizer(model.parameters(), lr=1e-3, weight_decay=0.1)
    losses = []
    for batch, _ in run.steps:  # the old train_clip loop; no randomness inside a step
        ids = tokenizer(batch["caption"], padding="max_length", max_length=train_shapes_sd.MAX_LENGTH,
                        truncation=True, return_tensors="pt").input_ids
        out_ = model(input_ids=ids, pixel_values=batch["pixel_values"], return_loss=True)
        out_.loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
        losses.append(out_.loss.item())
    trained = {f"clip.{k}": v for k, v in load_file(result.model_path / "clip" / "model.safetensors").items()}
    assert_same(result.losses, losses, trained, snapshot(clip=model), start)


def test_vae_stage_replays_the_old_loop(pipeline, tmp_path):
    init, _ = pipeline
    result, run = library_run(tmp_path, init, {"name": "recorded-autoencoder", "options": {"kl_weight": 1e-6}},
                              batch=8, lr=1e-3, weight_decay=0.0, seed=2,
                              data={"options": {"count": 32, "seed": 1, "split": "any", "style": ["plain", "dots"]}})
    vae = run.initial["vae"]
    start = snapshot(vae=vae)
    opt, sched = old_optimizer(vae.parameters(), lr=1e-3, weight_decay=0.0)
    g, losses = torch.Generator(), []
    for batch, state in run.steps:  # the old train_vae loop, drawing from the run's generator
        g.set_state(state)
        x = batch["pixel_values"]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
        recon = vae.decode(z).sample
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
        losses.append(loss.item())
    trained = snapshot(vae=difforge.load_backbone(result.model_path).vae)
    assert_same(result.losses, losses, trained, snapshot(vae=vae), start)


def test_unet_stage_replays_the_old_loop(pipeline, tmp_path):
    init, tokenizer = pipeline
    result, run = library_run(tmp_path, init, {"name": "recorded-denoising"}, batch=8, lr=1e-3, weight_decay=1e-2,
                              seed=3, max_grad_norm=1.0, ema={"decay": 0.999},
                              data={"options": {"count": 32, "seed": 0}, "caption_dropout": 0.1})
    backbone = difforge.load_backbone(init)
    unet, vae, text_encoder = run.initial["denoiser"], backbone.vae, backbone.text_encoder
    start = snapshot(unet=unet)
    scale, alphas = vae.config.scaling_factor, backbone.scheduler.alphas_cumprod

    def encode(captions):
        ids = tokenizer(captions, padding="max_length", max_length=train_shapes_sd.MAX_LENGTH, truncation=True,
                        return_tensors="pt").input_ids
        return text_encoder(ids)[0]

    with torch.no_grad():
        null_state = encode([""])[0]
    ema = EMAModel(unet.parameters(), decay=0.999)
    opt, lr = old_optimizer(unet.parameters(), lr=1e-3, weight_decay=1e-2)
    g, losses, dropped = torch.Generator(), [], 0
    for batch, state in run.steps:  # the old train_unet loop, drawing from the run's generator
        g.set_state(state)
        with torch.no_grad():
            posterior = vae.encode(batch["pixel_values"]).latent_dist
            x0 = (posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)) * scale
            cond = encode(batch["caption"])
        drop = torch.rand(len(x0), generator=g) < 0.1
        cond[drop] = null_state
        dropped += int(drop.sum())
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, len(alphas), (len(x0),), generator=g)
        a = alphas[t].reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(unet(x_t, t, cond).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step(), lr.step(), opt.zero_grad()
        ema.step(unet.parameters())
        losses.append(loss.item())
    assert dropped > 0  # the replay covered caption dropout
    ema.copy_to(unet.parameters())
    trained = snapshot(unet=difforge.load_backbone(result.output_dir / "model_ema").denoiser)
    assert_same(result.losses, losses, trained, snapshot(unet=unet), start)
