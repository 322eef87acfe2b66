"""The training loop: it learns, resumes exactly, checkpoints atomically and fails clearly."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import pixel_unet_config
from safetensors.torch import load_file

import difforge
from difforge import hookimpl, load_config
from difforge.checkpointing import list_checkpoints
from difforge.errors import ConfigError, DataError, TrainingError
from difforge.training import DenoisingObjective, Trainer

HERE = Path(__file__).parent


def _mean(values):
    return sum(values) / len(values)


@pytest.mark.parametrize("parameterization,scheduler", [
    ("epsilon", "ddpm"), ("v", "ddpm"), ("x0", "ddpm"), ("flow", "flow_euler"),
])
def test_full_finetuning_learns_for_every_parameterization(parameterization, scheduler, toy_images, tmp_path):
    config = pixel_unet_config(toy_images, tmp_path / "run")
    config["model"]["options"]["scheduler"] = scheduler
    config["model"]["parameterization"] = parameterization
    config["model"]["loss_weighting"] = "min_snr"
    result = difforge.train(config)
    assert result.steps == 40 and result.model_path.exists()
    first, last = _mean(result.losses[:8]), _mean(result.losses[-8:])
    assert last < 0.6 * first, (first, last)


def test_lora_training_on_tiny_sd_lowers_loss(lora_config):
    lora_config["train"].update(steps=40, lr=3e-3)
    lora_config["data"]["batch_size"] = 8
    result = difforge.train(lora_config)
    assert (result.adapter_path / "pytorch_lora_weights.safetensors").exists()
    assert _mean(result.losses[-10:]) < _mean(result.losses[:10])


def _resume_config(tiny_sd_dir, toy_images, out):
    return {
        "model": {"pretrained": str(tiny_sd_dir), "loss_weighting": "min_snr"},
        "data": {"dataset": "image-folder", "options": {"path": str(toy_images), "resolution": 32},
                 "batch_size": 4, "caption_dropout": 0.3, "random_flip": True},
        "adapter": {"type": "lora", "options": {"rank": 4, "dropout": 0.1}},
        "train": {"steps": 20, "lr": 1e-3, "lr_scheduler": "cosine", "warmup_steps": 3,
                  "ema": {"decay": 0.9}, "seed": 7},
        "output": {"dir": str(out), "checkpoint_every": 10, "keep_last": 3, "tensorboard": False, "progress": False},
    }


def _worker(config_path, *extra):
    return subprocess.Popen([sys.executable, str(HERE / "resume_worker.py"), str(config_path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_exact_resume_after_sigkill_is_bitwise_identical(tiny_sd_dir, toy_images, tmp_path):
    """20 uninterrupted steps == 10 steps, SIGKILL, resume, 10 more (weights, EMA, losses)."""
    for name in ("straight", "killed"):
        cfg = _resume_config(tiny_sd_dir, toy_images, tmp_path / name)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    killed = _worker(tmp_path / "killed.yaml", "--hang-after", "12")
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "checkpoint-10").exists():
        assert killed.poll() is None, killed.stdout.read()
        assert time.time() < deadline, "checkpoint-10 never appeared"
        time.sleep(0.1)
    time.sleep(1.0)  # let it run on past the checkpoint (it hangs at step 12), then kill it hard
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    straight = _worker(tmp_path / "straight.yaml")  # one at a time: two trainers on 2 cores thrash
    assert straight.wait(timeout=300) == 0, straight.stdout.read()
    assert not (tmp_path / "killed" / "adapter").exists()
    resumed = _worker(tmp_path / "killed.yaml", "--set", "train.resume=auto")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()

    for sub in ("adapter", "adapter_ema"):
        a = load_file(str(tmp_path / "straight" / sub / "pytorch_lora_weights.safetensors"))
        b = load_file(str(tmp_path / "killed" / sub / "pytorch_lora_weights.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), sub
    for step in (10, 20):
        sa = json.loads((tmp_path / "straight" / f"checkpoint-{step}" / "trainer_state.json").read_text())
        sb = json.loads((tmp_path / "killed" / f"checkpoint-{step}" / "trainer_state.json").read_text())
        assert sa["losses"] == sb["losses"] and sa["micro_step"] == sb["micro_step"]
        oa = torch.load(tmp_path / "straight" / f"checkpoint-{step}" / "optimizer.pt", weights_only=True)
        ob = torch.load(tmp_path / "killed" / f"checkpoint-{step}" / "optimizer.pt", weights_only=True)
        assert all(torch.equal(oa["state"][i]["exp_avg_sq"], ob["state"][i]["exp_avg_sq"]) for i in oa["state"])


def test_checkpoint_write_failure_keeps_previous_checkpoint(toy_images, tmp_path, monkeypatch):
    config = load_config(data=pixel_unet_config(toy_images, tmp_path / "run", train={"steps": 4},
                                                output={"checkpoint_every": 2, "keep_last": 2}))
    import difforge.training.state as state_module

    real = state_module.atomic_torch_save
    scheduler_writes = []

    def flaky(obj, path):  # the second checkpoint fails half-way through its files
        if Path(path).name == "lr_scheduler.pt":
            scheduler_writes.append(path)
            if len(scheduler_writes) == 2:
                raise OSError("disk full")
        return real(obj, path)

    monkeypatch.setattr(state_module, "atomic_torch_save", flaky)
    with pytest.raises(OSError, match="disk full"):
        Trainer(config).fit()
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2"]
    assert sorted(p.name for p in run.iterdir() if "checkpoint" in p.name) == ["checkpoint-2"]  # no partial dir
    first = load_file(str(run / "checkpoint-2" / "trainable.safetensors"))
    assert first and all(torch.isfinite(v).all() for v in first.values())
    # and the run resumes from it
    monkeypatch.setattr(state_module, "atomic_torch_save", real)
    resumed = Trainer(load_config(data={**config.model_dump(),
                                        "train": {**config.train.model_dump(), "resume": "auto"}}))
    assert resumed.step == 2
    resumed.fit()
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]


def test_keep_last_prunes_old_checkpoints(toy_images, tmp_path):
    difforge.train(pixel_unet_config(toy_images, tmp_path / "run", train={"steps": 6},
                                     output={"checkpoint_every": 1, "keep_last": 2}))
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["checkpoint-5", "checkpoint-6"]


class NaNAtCall(DenoisingObjective):
    """Denoising, except that calls listed in ``bad_calls`` return NaN."""

    name = "nan-at-call"
    bad_calls: set[int] = set()

    def __init__(self, backbone, **options):
        super().__init__(backbone)
        self.calls = 0

    def loss(self, batch, denoiser, generator):
        loss, logs = super().loss(batch, denoiser, generator)
        self.calls += 1
        return (loss * float("nan") if self.calls in self.bad_calls else loss), logs


@pytest.fixture
def nan_objective(fresh_plugins):
    module = type(sys)("nan_plugin")
    module.difforge_register_objectives = hookimpl(lambda: {"nan-at-call": NaNAtCall})
    difforge.register_plugin(module, "nan-plugin")
    return NaNAtCall


def test_nan_loss_stops_naming_step_and_last_checkpoint(nan_objective, toy_images, tmp_path):
    nan_objective.bad_calls = {4}
    config = pixel_unet_config(toy_images, tmp_path / "run", train={"steps": 6},
                               output={"checkpoint_every": 2}, objective={"name": "nan-at-call"})
    with pytest.raises(TrainingError) as info:
        difforge.train(config)
    message = str(info.value)
    assert "non-finite loss (nan) at step 4" in message
    assert f"last good checkpoint: {tmp_path / 'run' / 'checkpoint-2'}" in message
    assert "\n" not in message


def test_nan_loss_skip_mode_counts_and_continues(nan_objective, toy_images, tmp_path):
    nan_objective.bad_calls = {2, 3}
    config = pixel_unet_config(toy_images, tmp_path / "run", train={"steps": 5, "on_nan": "skip"},
                               objective={"name": "nan-at-call"})
    result = difforge.train(config)
    assert result.steps == 5 and result.skipped_batches == 2
    assert all(v == v for v in result.losses)


def test_nan_loss_skip_mode_stops_after_too_many_in_a_row(nan_objective, toy_images, tmp_path):
    """Every batch non-finite used to loop forever with no output; now the run stops with one line."""
    nan_objective.bad_calls = set(range(1, 1000))
    config = pixel_unet_config(toy_images, tmp_path / "run", objective={"name": "nan-at-call"},
                               train={"steps": 5, "on_nan": "skip", "max_consecutive_skips": 4})
    with pytest.raises(TrainingError) as err:
        difforge.train(config)
    message = str(err.value)
    assert message.startswith("4 non-finite losses in a row at step 1 (train.max_consecutive_skips)")
    assert "\n" not in message


@pytest.fixture
def images_with_corrupt_file(toy_images, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for p in toy_images.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "0003.png").write_bytes(b"this is not a png")
    return folder


def test_corrupt_image_error_names_the_file(images_with_corrupt_file, tmp_path):
    config = pixel_unet_config(images_with_corrupt_file, tmp_path / "run", train={"steps": 4})
    with pytest.raises(DataError, match=r"cannot read image .*0003\.png"):
        difforge.train(config)


def test_corrupt_image_skip_mode_counts(images_with_corrupt_file, tmp_path):
    config = pixel_unet_config(images_with_corrupt_file, tmp_path / "run", train={"steps": 4})
    config["data"]["on_corrupt"] = "skip"
    result = difforge.train(config)
    assert result.steps == 4 and result.skipped_samples >= 1
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["skipped_samples"] == result.skipped_samples


def test_gradient_checkpointing_gives_the_same_update(lora_config):
    outs = []
    for flag in (False, True):
        cfg = {**lora_config, "train": {**lora_config["train"], "steps": 2, "gradient_checkpointing": flag}}
        cfg["output"] = {**lora_config["output"], "dir": lora_config["output"]["dir"] + str(flag)}
        result = difforge.train(cfg)
        outs.append((result.losses, load_file(str(result.adapter_path / "pytorch_lora_weights.safetensors"))))
    (la, wa), (lb, wb) = outs
    assert la == pytest.approx(lb, rel=1e-5)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-5)


def test_gradient_accumulation_counts_optimizer_steps(toy_images, tmp_path):
    train = {"steps": 3, "grad_accum": 2, "lr_scheduler": "linear"}
    config = load_config(data=pixel_unet_config(toy_images, tmp_path / "run", train=train))
    trainer = Trainer(config)
    trainer.fit()
    assert trainer.step == 3 and trainer.micro_step == 6
    assert trainer.lr_scheduler.last_epoch == 3


def test_ema_tensorboard_and_sample_grid(lora_config):
    lora_config["train"].update(steps=4, ema={"decay": 0.5})
    lora_config["output"].update(tensorboard=True, sample_every=2, sample_prompts=["a red circle", "a blue square"],
                                 sample_steps=2, log_every=1, sample_metrics=["pixel-statistics"])
    result = difforge.train(lora_config)
    out = result.output_dir
    raw = load_file(str(out / "adapter" / "pytorch_lora_weights.safetensors"))
    ema = load_file(str(out / "adapter_ema" / "pytorch_lora_weights.safetensors"))
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)
    assert list(out.rglob("events.out.tfevents.*"))
    from PIL import Image

    grid = Image.open(out / "samples" / "step-000004.png")
    assert grid.size[0] > 32 and (out / "samples" / "step-000002.png").exists()
    metrics = json.loads((out / "samples" / "step-000004.json").read_text())  # the registered metrics hook
    assert set(metrics["pixel-statistics"]) == {"mean", "std", "diversity"}


def test_8bit_adam_without_cuda_is_a_clear_error(toy_images, tmp_path):
    config = pixel_unet_config(toy_images, tmp_path / "run", train={"optimizer": "adamw8bit"})
    with pytest.raises(ConfigError, match="train.optimizer: 'adamw8bit' needs CUDA"):
        difforge.train(config)


@pytest.mark.slow
def test_torch_compile_trains_the_same(toy_images, tmp_path):
    """``train.compile`` goes through torch.compile (inductor on CPU: ~75 s to compile)."""
    losses = []
    for flag in (False, True):
        config = pixel_unet_config(toy_images, tmp_path / f"run{flag}", train={"steps": 3, "compile": flag})
        result = difforge.train(config)
        losses.append(result.losses)
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_text_encoder_trains_jointly_with_the_denoiser_and_ema_is_saved(tiny_sd_dir, toy_images, tmp_path):
    """denoising with train_text_encoder: both modules train (checkpoint names say which), and a
    full run with EMA saves model/ and model_ema/."""
    from difforge.backbone import load_backbone

    config = pixel_unet_config(toy_images, tmp_path / "run", train={"steps": 4, "ema": {"decay": 0.5}},
                               output={"checkpoint_every": 4})
    config["model"] = {"build": "unet2d-condition", "options": {
        "text_encoder": str(tiny_sd_dir), "denoiser": {
            "sample_size": 16, "in_channels": 3, "out_channels": 3, "block_out_channels": [16, 32],
            "layers_per_block": 1, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 32,
            "attention_head_dim": 4, "norm_num_groups": 8}}}
    config["objective"] = {"name": "denoising", "options": {"train_text_encoder": True}}
    result = difforge.train(config)
    names = load_file(str(tmp_path / "run" / "checkpoint-4" / "trainable.safetensors")).keys()
    assert {n.split(".")[0] for n in names} == {"denoiser", "text_encoder"}
    before = load_backbone(tiny_sd_dir).text_encoder.state_dict()
    trained, averaged = (load_backbone(tmp_path / "run" / name).text_encoder.state_dict()
                         for name in ("model", "model_ema"))
    assert any(not torch.equal(before[k], trained[k]) for k in before)
    assert any(not torch.equal(trained[k], averaged[k]) for k in trained)
    assert result.model_path == tmp_path / "run" / "model"
