"""What share of a real-size UNet each adapter type trains, without any weights.

Builds ``UNet2DConditionModel`` from Stable Diffusion 1.5's UNet config (``configs/sd15-unet.json``,
shipped here; 859,520,964 parameters, the published ≈ 860 M) on the ``meta`` device, adds each
adapter type with the options of its example config (``examples/configs/adapters/<type>.yaml``)
and counts the trainable parameters; the same for shapes-sd-tiny's UNet. DiffFit's point is its
share on a real-size model (the paper: ≈ 0.1 % of DiT-XL/2), not on the tiny one.

    python benchmarks/adapter_share.py     # seconds; writes results/adapter_share.json
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SD15_CONFIG = ROOT / "benchmarks" / "configs" / "sd15-unet.json"
RESULTS = ROOT / "benchmarks" / "results" / "adapter_share.json"
#: left out: configs that train more than an adapter on the UNet (IP-Adapter's projection, the
#: controllable SC-Tuner's condition encoder), and the types that choose their entries by weight
#: magnitude (sparse-ft, SaRA), which meta tensors do not have
SKIP = {"ip-adapter", "sc-tuner-control", "sparse-ft", "sara"}


def meta_unet(config: dict):
    """A ``UNet2DConditionModel`` of ``config`` with no storage (``meta`` tensors)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})


def trainable_share(config: dict, kind: str, options: dict) -> int:
    """Trainable parameters of adapter ``kind`` with ``options`` on a meta UNet of ``config``."""
    from difforge.adapters.composition import AdapterSet

    adapters = AdapterSet(meta_unet(config))
    adapters.add(kind, "share", **options)
    return sum(p.numel() for p in adapters.trainable_parameters("share"))


def measure() -> dict:
    """Every example adapter config on the SD1.5-shaped and the tiny UNet."""
    import difforge

    sd15 = json.loads(SD15_CONFIG.read_text())
    tiny = dict(difforge.load("shapes-sd-tiny").denoiser.config)
    totals = {"sd15": sum(p.numel() for p in meta_unet(sd15).parameters()),
              "shapes-sd-tiny": sum(p.numel() for p in meta_unet(tiny).parameters())}
    rows = {}
    for path in sorted((ROOT / "examples" / "configs" / "adapters").glob("*.yaml")):
        if path.stem in SKIP:
            continue
        adapter = yaml.safe_load(path.read_text())["adapter"]
        kind, options = adapter["type"], adapter.get("options", {})
        counts = {name: trainable_share(config, kind, options) for name, config in (("sd15", sd15),
                                                                                     ("shapes-sd-tiny", tiny))}
        rows[path.stem] = {"type": kind, "options": options, "trainable": counts,
                           "percent": {k: 100 * v / totals[k] for k, v in counts.items()}}
    return {"unet_parameters": totals, "rows": rows}


def table(results: dict) -> str:
    """The docs table: trainable parameters and share per adapter type, SD1.5-shaped vs tiny."""
    lines = ["| example config | trainable on SD1.5's UNet | % of 859.5 M | trainable on shapes-sd-tiny "
             "| % of its UNet |",
             "|---|---|---|---|---|"]
    for name, row in results["rows"].items():
        t, p = row["trainable"], row["percent"]
        lines.append(f"| `{name}` | {t['sd15']:,} | {p['sd15']:.3f} | {t['shapes-sd-tiny']:,} | "
                     f"{p['shapes-sd-tiny']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    """Measure, print the table, store the results."""
    results = measure()
    print(table(results))
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
