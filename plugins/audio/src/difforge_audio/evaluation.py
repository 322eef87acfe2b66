"""Music ControlNet's evaluation: generate under controls taken from reference clips and measure
how well the generated clips follow them (melody accuracy, dynamics correlation, rhythm F1),
against the uncontrolled model, per control, all together, and with half the timeline given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import features
from .codec import MelCodec
from .controls import CONTROL_NAMES, Controls, extract_controls
from .music import HOP_LENGTH, NUM_FRAMES, SAMPLE_RATE, random_clip
from .pipeline import DEFAULT_SAMPLER, DEFAULT_STEPS

HELD_OUT_SEED = 1_000_000  # reference clips come from seeds never used in training
METRICS = ("melody_accuracy", "dynamics_correlation", "rhythm_f1")
#: condition -> (controls given, frames given)
CONDITIONS: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "uncontrolled": ((), (0, NUM_FRAMES)),
    "melody": (("melody",), (0, NUM_FRAMES)),
    "dynamics": (("dynamics",), (0, NUM_FRAMES)),
    "rhythm": (("rhythm",), (0, NUM_FRAMES)),
    "all": (CONTROL_NAMES, (0, NUM_FRAMES)),
    "all, first half only": (CONTROL_NAMES, (0, NUM_FRAMES // 2)),
}


@dataclass
class Reference:
    """A held-out clip: its caption, spectrogram and extracted controls."""

    caption: str
    spectrogram: np.ndarray
    controls: Controls


def references(count: int, seed: int = HELD_OUT_SEED, codec: MelCodec | None = None) -> list[Reference]:
    """``count`` held-out reference clips."""
    codec = codec or MelCodec()
    out = []
    for i in range(count):
        clip = random_clip(seed + i)
        spec = codec.encode(clip.audio)
        out.append(Reference(clip.caption, spec, extract_controls(spec, codec)))
    return out


def control_metrics(generated, reference: Reference, frames: tuple[int, int] = (0, NUM_FRAMES),
                    codec: MelCodec | None = None) -> dict[str, float]:
    """How well a generated spectrogram follows the reference's controls within ``frames``."""
    start, stop = frames
    mask = np.zeros(NUM_FRAMES, bool)
    mask[start:stop] = True
    span = (start * HOP_LENGTH / SAMPLE_RATE, stop * HOP_LENGTH / SAMPLE_RATE)
    ref = reference.controls
    return {
        "melody_accuracy": features.melody_accuracy(features.melody(generated, codec), ref.melody, mask),
        "dynamics_correlation": features.dynamics_correlation(features.dynamics(generated, codec), ref.dynamics, mask),
        "rhythm_f1": features.rhythm_f1(features.onsets(generated, codec),
                                        features.onsets(reference.spectrogram, codec), span=span),
    }


def generate_under(pipeline, refs: list[Reference], given: Sequence[str], frames: tuple[int, int], *,
                   num_steps: int = DEFAULT_STEPS, sampler: str = DEFAULT_SAMPLER, guidance_scale: float = 3.0,
                   seed: int = 0) -> torch.Tensor:
    """Spectrograms for the references' captions with their controls ``given`` in ``frames``
    (nothing given: the base model alone)."""
    generator = torch.Generator().manual_seed(seed)
    prompts = [r.caption for r in refs]
    if not given:
        return pipeline(prompts, num_steps=num_steps, sampler=sampler, guidance_scale=guidance_scale,
                        generator=generator)
    controls = [r.controls.only(given).within(*frames) for r in refs]
    return pipeline(prompts, controls, num_steps=num_steps, sampler=sampler, guidance_scale=guidance_scale,
                    generator=generator)


def summarise(specs, refs: list[Reference], frames: tuple[int, int]) -> dict[str, float]:
    """Mean metrics of generated spectrograms against their references; for controls given on
    part of the timeline, ``unspecified/...`` are the metrics over the rest."""
    measured = [control_metrics(s, r, frames) for s, r in zip(specs, refs, strict=True)]
    row = {m: float(np.nanmean([metrics[m] for metrics in measured])) for m in METRICS}
    if tuple(frames) != (0, NUM_FRAMES):
        rest = (frames[1], NUM_FRAMES) if frames[0] == 0 else (0, frames[0])
        rows = [control_metrics(s, r, rest) for s, r in zip(specs, refs, strict=True)]
        row |= {f"unspecified/{m}": float(np.nanmean([x[m] for x in rows])) for m in METRICS}
    return row


def evaluate_controls(pipeline, refs: list[Reference], conditions: dict | None = None, *,
                      num_steps: int = DEFAULT_STEPS, sampler: str = DEFAULT_SAMPLER, guidance_scale: float = 3.0,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """:func:`summarise` per condition of ``conditions`` (default :data:`CONDITIONS`), every
    condition drawn with the same seed."""
    return {name: summarise(generate_under(pipeline, refs, given, frames, num_steps=num_steps, sampler=sampler,
                                           guidance_scale=guidance_scale, seed=seed), refs, frames)
            for name, (given, frames) in (conditions or CONDITIONS).items()}


def format_table(table: dict[str, dict[str, float]]) -> str:
    """The evaluation as a markdown table."""
    lines = ["| condition | melody accuracy | dynamics correlation | rhythm F1 |", "|---|---|---|---|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[m]:.3f}" for m in METRICS) + " |")
        if any(k.startswith("unspecified/") for k in row):
            lines.append(f"| {name}: the unspecified half | "
                         + " | ".join(f"{row['unspecified/' + m]:.3f}" for m in METRICS) + " |")
    return "\n".join(lines)


def caption_adherence_table(backbone, prompts: Sequence[str], per_prompt: int = 4, *,
                            num_steps: int = DEFAULT_STEPS, sampler: str = DEFAULT_SAMPLER,
                            guidance_scale: float = 3.0, seed: int = 0, batch: int = 48) -> dict[str, float]:
    """Mean per-attribute caption adherence (tempo, ``order`` = the caption's events, dynamics)
    of ``per_prompt`` samples of each prompt, read by the analytic scorer."""
    from .scorer import caption_adherence

    prompts = [p for p in prompts for _ in range(per_prompt)]
    generator = torch.Generator().manual_seed(seed)
    specs = torch.cat([backbone.sample(prompts[i:i + batch], num_steps=num_steps, sampler=sampler,
                                       guidance_scale=guidance_scale, generator=generator)
                       for i in range(0, len(prompts), batch)])
    rows = [caption_adherence(s, p) for s, p in zip(specs, prompts, strict=True)]
    return {key: float(np.mean([r[key] for r in rows])) for key in ("tempo", "order", "dynamics", "reward")}
