"""Distributed data parallel on CPU: 2 processes over gloo, launched with torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from helpers import pixel_unet_config

HERE = Path(__file__).parent


def test_ddp_two_cpu_processes_stay_in_sync(toy_images, tmp_path):
    config = pixel_unet_config(toy_images, tmp_path / "run", train={"steps": 4, "device": "cpu"},
                               output={"checkpoint_every": 2})
    config["data"]["batch_size"] = 4
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         str(HERE / "ddp_worker.py"), str(tmp_path / "ddp.yaml"), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # each rank saw its own shard of every epoch: no sample twice in the same epoch across ranks
    assert not set(r0["seen"][:8]) & set(r1["seen"][:8])
    w0, w1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert r0["changed"] > 0
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks diverged: gradients were not all-reduced"
    # one checkpoint, written once, with both ranks' RNG states
    ckpt = tmp_path / "run" / "checkpoint-4"
    assert (ckpt / "rng-0.pt").exists() and (ckpt / "rng-1.pt").exists()
