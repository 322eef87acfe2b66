"""The audio training scripts' ``difforge.train`` runs compute what their hand-written loops
computed before (train_music_sd.py at commit 1dc59dc, train_music_controlnet.py at ec78595).

A library run records (``difforge_testkit.recording_objective``) its batches, its generator's
state before each step and its initial weights; the old loop's arithmetic (copied below) replays
them and must give the same losses and trained weights to float tolerance. Taken from the
library run on purpose, as the port changed them: the data order (epoch permutations instead of
indices drawn with replacement), the random stream (the run's generator), the LR schedule
(diffusers' warm-up + cosine instead of the scripts' ``warmup_cosine``) and, for the ControlNet,
the control masks (drawn by the ``music-controls`` dataset instead of inside the loop).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("difforge_audio")

import difforge  # noqa: E402
from difforge.plugin_api import Backbone, get_registry, register_plugin  # noqa: E402
from difforge_audio.models import BASE_MODEL, model_path  # noqa: E402
from difforge_audio.music import vocabulary  # noqa: E402
from difforge_testkit import build_clip_tokenizer, recording_objective, snapshot, update_difference  # noqa: E402

TRAINING = Path(__file__).resolve().parents[1] / "training"
sys.path.insert(0, str(TRAINING))
import train_music_controlnet  # noqa: E402
import train_music_sd  # noqa: E402

STEPS = 6


@pytest.fixture(scope="module")
def recording():
    """Recording variants of the ``denoising`` and ``controlnet`` objectives, registered once."""
    from difforge.plugin_api import hookimpl

    objectives = get_registry("objectives")
    recorded = {f"audio-recorded-{name}": recording_objective(objectives.get(name))
                for name in ("denoising", "controlnet")}
    plugin = type("RecordingObjectives", (), {
        "difforge_register_objectives": staticmethod(hookimpl(lambda: recorded))})
    register_plugin(plugin, "audio-recording-objectives")
    return recorded


def old_optimizer(params, lr, weight_decay):
    """The old scripts' AdamW, with the library's LR schedule (diffusers' warm-up + cosine)."""
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return optimizer, get_scheduler("cosine", optimizer, num_warmup_steps=max(1, STEPS // 50), num_training_steps=STEPS)


def run_library(recorded, config, name):
    config["objective"]["name"] = f"audio-recorded-{name}"
    config["output"]["progress"] = False
    result = difforge.train(config)
    return result, recorded[f"audio-recorded-{name}"].runs[-1]


def test_music_sd_run_replays_the_old_joint_loop(recording, tmp_path):
    tokenizer = build_clip_tokenizer(tmp_path / "tokenizer", [*vocabulary(), ","], max_length=train_music_sd.MAX_LENGTH)
    text_encoder, unet, scheduler = train_music_sd.build_models(tokenizer)
    Backbone(unet, scheduler, text_encoder=text_encoder, tokenizer=tokenizer).save_pretrained(tmp_path / "init")
    config = train_music_sd.train_config(tmp_path / "init", clips=16, steps=STEPS, batch=4, lr_max=1e-3,
                                         run_dir=tmp_path / "run")
    result, run = run_library(recording, config, "denoising")

    from diffusers.training_utils import EMAModel

    unet, text_encoder = run.initial["denoiser"], run.initial["text_encoder"]
    start = snapshot(denoiser=unet, text_encoder=text_encoder)
    ids_of = lambda captions: tokenizer(captions, padding="max_length", max_length=train_music_sd.MAX_LENGTH,  # noqa: E731
                                        truncation=True, return_tensors="pt").input_ids
    null = ids_of([""])
    params = [*unet.parameters(), *text_encoder.parameters()]
    ema = EMAModel(params, decay=0.999)
    opt, lr = old_optimizer(params, lr=1e-3, weight_decay=1e-2)
    alphas = scheduler.alphas_cumprod
    g, losses, dropped = torch.Generator(), [], 0
    for batch, state in run.steps:  # the old train() loop, drawing from the run's generator
        g.set_state(state)
        x0, ids = batch["sample"], ids_of(batch["caption"])
        drop = torch.rand(len(x0), generator=g) < 0.1
        ids[drop] = null
        dropped += int(drop.sum())
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, len(alphas), (len(x0),), generator=g)
        a = alphas[t].reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(unet(x_t, t, text_encoder(ids)[0]).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(), lr.step(), opt.zero_grad()
        ema.step(params)
        losses.append(loss.item())
    ema.copy_to(params)
    assert dropped > 0
    trained = difforge.load_backbone(result.output_dir / "model_ema")
    assert result.losses == pytest.approx(losses, rel=1e-5, abs=1e-6)
    assert update_difference(snapshot(denoiser=trained.denoiser, text_encoder=trained.text_encoder),
                             snapshot(denoiser=unet, text_encoder=text_encoder), start) < 1e-3


def test_music_controlnet_run_replays_the_old_loop(recording, tmp_path):
    base = str(model_path(BASE_MODEL))
    config = train_music_controlnet.train_config(base, clips=8, steps=STEPS, batch=4, run_dir=tmp_path / "run")
    result, run = run_library(recording, config, "controlnet")

    backbone = difforge.load_backbone(base)
    unet, controlnet = backbone.denoiser, run.initial["controlnet"]
    start = snapshot(controlnet=controlnet)
    with torch.no_grad():
        null = backbone.encode_prompts([""])[0]
    opt, lr = old_optimizer(controlnet.parameters(), lr=5e-4, weight_decay=1e-2)
    alphas = backbone.scheduler.alphas_cumprod
    g, losses = torch.Generator(), []
    for batch, state in run.steps:  # the old train() loop (ControlledUNet spelled out)
        g.set_state(state)
        x0, control = batch["sample"], batch["controlnet_cond"]
        with torch.no_grad():
            cond = backbone.encode_prompts(batch["caption"])
        cond[torch.rand(len(x0), generator=g) < 0.1] = null
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, len(alphas), (len(x0),), generator=g)
        a = alphas[t].reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        down, mid = controlnet(x_t, t, encoder_hidden_states=cond, controlnet_cond=control, conditioning_scale=1.0,
                               return_dict=False)
        out = unet(x_t, t, encoder_hidden_states=cond, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid).sample
        loss = F.mse_loss(out, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(controlnet.parameters(), 1.0)
        opt.step(), lr.step(), opt.zero_grad()
        losses.append(loss.item())
    from diffusers import ControlNetModel

    trained = ControlNetModel.from_pretrained(result.model_path)
    assert result.losses == pytest.approx(losses, rel=1e-5, abs=1e-6)
    assert result.losses[-1] != pytest.approx(result.losses[0], rel=1e-3)
    assert update_difference(snapshot(controlnet=trained), snapshot(controlnet=controlnet), start) < 1e-3
