"""Distributed data parallel on CPU: 2 processes over gloo, launched with torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from helpers import pixel_unet_config
from safetensors.torch import load_file

HERE = Path(__file__).parent


def _torchrun(config: dict, tmp_path: Path, name: str, port: int) -> subprocess.CompletedProcess:
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / name).mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         str(HERE / "ddp_worker.py"), str(tmp_path / f"{name}.yaml"), str(tmp_path / name)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )


def test_ddp_two_cpu_processes_stay_in_sync(toy_images, tmp_path):
    config = pixel_unet_config(toy_images, tmp_path / "run", train={"steps": 4, "device": "cpu"},
                               output={"checkpoint_every": 2})
    config["data"]["batch_size"] = 4
    proc = _torchrun(config, tmp_path, "ranks", 29533)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # each rank saw its own shard of every epoch: no sample twice in the same epoch across ranks
    assert not set(r0["seen"][:8]) & set(r1["seen"][:8])
    w0, w1 = (load_file(str(tmp_path / "ranks" / f"rank{r}.safetensors")) for r in (0, 1))
    assert r0["changed"] > 0
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks diverged: gradients were not all-reduced"
    # one checkpoint, written once, with both ranks' RNG states
    ckpt = tmp_path / "run" / "checkpoint-4"
    assert (ckpt / "rng-0.pt").exists() and (ckpt / "rng-1.pt").exists()


def test_ddp_text_encoder_adapter_trains_in_sync(toy_images, tmp_path):
    """Only a LoRA on the text encoder trains: the denoiser is not wrapped by DDP (it would refuse
    a module without trainable parameters) and the adapter's gradients are averaged by hand."""
    config = {"model": {"pretrained": "shapes-sd-tiny"},
              "data": {"dataset": "image-folder", "options": {"path": str(toy_images)}, "batch_size": 2},
              "adapter": {"type": "lora", "component": "text_encoder", "options": {"rank": 2}},
              "train": {"steps": 3, "lr": 1e-2, "seed": 0, "device": "cpu"},
              "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False}}
    proc = _torchrun(config, tmp_path, "te-ranks", 29536)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / "te-ranks" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == 2 and r0["changed"] > 0 and not set(r0["seen"]) & set(r1["seen"])
    w0, w1 = (load_file(str(tmp_path / "te-ranks" / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0 and all("lora" in k for k in w0)
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks diverged: text-encoder gradients were not averaged"
    assert (tmp_path / "run" / "adapter").exists()


def test_ddp_on_policy_objective_resumes_mid_round_exactly(tmp_path):
    """DDPO in 2 processes: each rank samples its own round; a run resumed from a checkpoint taken
    in the middle of the rounds ends with the uninterrupted run's weights and losses, bit for bit."""
    def config(out, resume=None):
        return {"model": {"pretrained": "shapes-sd-tiny"},
                "data": {"dataset": "prompts", "options": {"prompts": ["a red circle", "a blue square on the left",
                                                                       "a green triangle", "a purple circle"]},
                         "batch_size": 1},
                "adapter": {"type": "lora", "options": {"rank": 2}},
                "objective": {"name": "ddpo", "options": {"reward": "colourfulness", "samples_per_prompt": 2,
                                                          "num_steps": 4, "minibatch_size": 1, "inner_epochs": 2}},
                "train": {"steps": 6, "lr": 1e-3, "seed": 0, "device": "cpu", "resume": resume},
                "output": {"dir": str(out), "checkpoint_every": 3, "keep_last": 5, "tensorboard": False,
                           "progress": False}}

    full = _torchrun(config(tmp_path / "full"), tmp_path, "full-ranks", 29534)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    middle = tmp_path / "full" / "checkpoint-3"
    assert (middle / "objective_state-0.json").exists() and (middle / "objective_state-1.json").exists()
    resumed = _torchrun(config(tmp_path / "resumed", str(middle)), tmp_path, "resumed-ranks", 29535)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    logs = {run: [json.loads((tmp_path / run / f"rank{r}.json").read_text())["losses"] for r in (0, 1)]
            for run in ("full-ranks", "resumed-ranks")}
    assert logs["full-ranks"][0] == logs["full-ranks"][1]  # the loss history is the mean over ranks
    assert logs["resumed-ranks"] == logs["full-ranks"], logs
    expected = load_file(str(tmp_path / "full" / "checkpoint-6" / "trainable.safetensors"))
    got = load_file(str(tmp_path / "resumed" / "checkpoint-6" / "trainable.safetensors"))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
