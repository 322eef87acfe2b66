"""The runs the CLI, the example and the benchmark share: a ``difforge.train`` config per method,
and the evaluation table of a tuned CLIP beside the zoo's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import benchmark as world
from .evaluation import compositional, retention

#: method name -> (objective, its options); the objectives' own defaults say what trains
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "contrastive": ("clip-finetune", {"trainable": "layernorm"}),
    "negclip": ("negclip", {"trainable": "all"}),
    "sds-clip": ("sds-clip", {"trainable": "layernorm"}),
    "sds-clip-lora": ("sds-clip", {"trainable": "lora"}),
    "diva": ("diva", {"trainable": "vision"}),
}


def distill_config(method: str, out: str | Path, *, steps: int = 200, batch_size: int = 32, lr: float = 1e-3,
                   seed: int = 0, train_count: int = 4096, options: dict[str, Any] | None = None,
                   overwrite: bool = False) -> dict[str, Any]:
    """The run config of ``method`` (a key of :data:`METHODS`): the teacher ``shapes-sd-tiny``,
    two-object scenes of the zoo's ``train`` split (never a held-out combination, and drawn from
    another seed stream than the benchmark), AdamW at ``lr`` (at most 1e-5 when a whole tower
    trains) with a short warm-up."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    objective, defaults = METHODS[method]
    options = {**defaults, **(options or {})}
    if options.get("trainable") in ("all", "vision"):
        lr = min(lr, 1e-5)  # whole towers take a fine-tuning rate (NegCLIP, DIVA), not the LayerNorms' 1e-3
    return {
        "model": {"pretrained": "shapes-sd-tiny"},
        "data": {"dataset": "shapes", "batch_size": batch_size,
                 "options": {"count": train_count, "seed": 11 + seed, "split": "train", "num_objects": 2}},
        "objective": {"name": objective, "options": options},
        "train": {"steps": steps, "lr": lr, "lr_scheduler": "constant_with_warmup", "warmup_steps": 10,
                  "seed": seed},
        "output": {"dir": str(out), "keep_last": 1, "tensorboard": False, "overwrite": overwrite},
    }


def evaluate_clip(reference: str | Path, *, count: int = 64, split: str = "heldout",
                  benchmark_seed: int = 0) -> dict[str, float]:
    """Compositional scores and retention of a CLIP (a saved student or a model name)."""
    from .student import ClipEncoder

    encoder = ClipEncoder.from_pretrained(reference)
    results = compositional(encoder, world.build(count, benchmark_seed, split))
    results.update(retention(encoder, world.retention_set(seed=benchmark_seed)))
    return results


#: the columns of the printed table: (key, heading)
TABLE_COLUMNS = [("winoground/all/text", "text"), ("winoground/all/image", "image"),
                 ("winoground/all/group", "group"), ("winoground/colour-swap/group", "colour grp"),
                 ("winoground/relation-swap/group", "relation grp"), ("aro/mean", "ARO"),
                 ("sugarcrepe/mean", "SugarCrepe"), ("zero_shot/shape", "zs shape"),
                 ("zero_shot/colour", "zs colour"), ("retrieval/image_to_text@1", "i→t R@1")]


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table of evaluation rows (missing values as ``–``)."""
    head = "| model | " + " | ".join(h for _, h in TABLE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    for name, values in rows.items():
        cells = [f"{values[k]:.3f}" if k in values else "–" for k, _ in TABLE_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["METHODS", "TABLE_COLUMNS", "distill_config", "evaluate_clip", "format_table"]
