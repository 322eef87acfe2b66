"""Launched by torchrun in test_ddp.py: trains with 2 CPU processes over gloo and dumps each
rank's final trained weights and the samples it saw."""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from difforge import load_config  # noqa: E402
from difforge.training import Trainer  # noqa: E402

config_path, out = sys.argv[1], Path(sys.argv[2])
seen: list[str] = []


class Recording(torch.utils.data.Dataset):
    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        item = self.inner[i]
        seen.append(item.get("path") or item["caption"])
        return item


config = load_config(config_path)
from difforge.training import build_dataset  # noqa: E402

trainer = Trainer(config, dataset=Recording(build_dataset(config)))
initial = {n: p.detach().clone() for n, p in trainer.trained.named.items()}
trainer.fit()
rank = trainer.accelerator.process_index
final = {n: p.detach().contiguous() for n, p in trainer.trained.named.items()}
save_file(final, str(out / f"rank{rank}.safetensors"))
changed = sum(not torch.equal(initial[n], final[n]) for n in final)
(out / f"rank{rank}.json").write_text(json.dumps({
    "world": trainer.accelerator.num_processes, "seen": seen, "changed": changed, "losses": trainer.losses,
}))
