"""The README's main job (until the model zoo lands): build a tiny Stable Diffusion pipeline
and toy images, train a LoRA on them (the API behind ``difforge train``) and sample before/after."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[4] / "examples" / "configs" / "demo_lora.yaml"


def main(argv: list[str] | None = None) -> int:
    """Prepare the fixtures under ``--out`` and run the demo LoRA training."""
    parser = argparse.ArgumentParser(prog="python -m difforge_testkit.demo", description=main.__doc__)
    parser.add_argument("--out", default="outputs/demo", help="where fixtures and results go")
    parser.add_argument("--config", default=str(DEMO_CONFIG), help="run config to use")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    import difforge

    from .components import build_tiny_sd
    from .toydata import write_toy_images

    out = Path(args.out)
    model, data = out / "tiny-sd", out / "images"
    if not (model / "model_index.json").exists():
        build_tiny_sd(model)
    if not (data / "metadata.jsonl").exists():
        write_toy_images(data, count=32)
    run = out / "run"
    result = difforge.train(args.config, overrides=[
        f"model.pretrained={model}", f"data.options.path={data}", f"output.dir={run}",
    ])
    prompts = ["a red circle", "a blue square", "a green circle", "a yellow square"]
    before = difforge.sample(str(model), prompts, num_steps=20, seed=0)
    after = difforge.sample(str(model), prompts, adapters=[(result.adapter_path, 1.0)], num_steps=20, seed=0)
    from difforge.sampling.grid import save_grid

    grid = save_grid(torch.cat([before, after]), run / "before_after.png", columns=len(prompts))
    k = max(1, len(result.losses) // 5)
    head, tail = result.losses[:k], result.losses[-k:]
    print(f"loss: mean of first {k} steps {sum(head) / k:.4f} -> last {k} steps {sum(tail) / k:.4f}")
    print(f"adapter: {run / 'adapter'}\nbefore/after grid (top: base, bottom: with LoRA): {grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
