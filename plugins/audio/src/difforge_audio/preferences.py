"""Audio preference data as Tango 2 builds it (Majumder et al., 2024): for each prompt, clips
generated from the prompt itself and from *perturbed* prompts whose events are missing or in the
wrong order; all are scored against the original prompt, and the best clip from the original
prompt is preferred over the worst clip. Fine-tuning then uses the core's ``diffusion-dpo``
objective on these pairs.

Here the events of a caption are its two registers in order ("low notes then high notes"), the
perturbations swap them (misordered) or drop them (missing), and the score is the analytic
caption adherence of :mod:`difforge_audio.scorer` (Tango 2 used CLAP).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import difforge

from .codec import MelCodec
from .data import write_wav
from .music import ORDERS
from .pipeline import DEFAULT_SAMPLER, DEFAULT_STEPS
from .scorer import caption_adherence


def perturb_events(caption: str, kind: str) -> str:
    """The caption with its events ``misordered`` (registers swapped) or ``missing`` (dropped)."""
    low_high, high_low = ORDERS["rising"], ORDERS["falling"]
    if kind == "misordered":
        if low_high in caption:
            return caption.replace(low_high, high_low)
        if high_low in caption:
            return caption.replace(high_low, low_high)
        return caption
    if kind == "missing":
        for phrase in (low_high, high_low):
            caption = caption.replace(f", {phrase}", "").replace(phrase, "")
        return caption
    raise ValueError(f"unknown perturbation {kind!r}; known: misordered, missing")


@torch.no_grad()
def build_audio_preferences(backbone, prompts: Sequence[str], out_dir: str | Path, *, samples_per_prompt: int = 2,
                            perturbed_per_prompt: int = 2, num_steps: int = DEFAULT_STEPS, guidance_scale: float = 3.0,
                            min_margin: float = 0.2, seed: int = 0) -> Path:
    """Generate, score and pair clips for ``prompts``; returns the ``pairs.jsonl`` path.

    Per prompt: ``samples_per_prompt`` clips from the prompt and ``perturbed_per_prompt`` from
    perturbed prompts (alternately misordered and missing events), all scored against the
    prompt. The pair is (best clip of the prompt, worst clip overall), kept when their scores
    differ by at least ``min_margin``. Clips are written as .wav (Griffin-Lim) and the exact
    spectrograms as .npy.
    """
    if samples_per_prompt < 1 or samples_per_prompt + perturbed_per_prompt < 2:
        raise ValueError("at least one clip from the prompt and two clips in all are needed to form a pair")
    out = Path(out_dir)
    (out / "spectrograms").mkdir(parents=True, exist_ok=True)
    codec, rng = MelCodec(), random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    lines, index = [], 0
    for prompt in prompts:
        kinds = [("misordered", "missing")[i % 2] for i in range(perturbed_per_prompt)]
        rng.shuffle(kinds)
        sources = [prompt] * samples_per_prompt + [perturb_events(prompt, k) for k in kinds]
        specs = backbone.sample(sources, num_steps=num_steps, sampler=DEFAULT_SAMPLER, guidance_scale=guidance_scale,
                                generator=generator)
        scores = [caption_adherence(s, prompt)["reward"] for s in specs]
        best = int(np.argmax(scores[:samples_per_prompt]))
        worst = int(np.argmin(scores))
        if best == worst or scores[best] - scores[worst] < min_margin:
            continue
        row = {"caption": prompt, "chosen_score": scores[best], "rejected_score": scores[worst],
               "rejected_prompt": sources[worst]}
        for side, i in (("chosen", best), ("rejected", worst)):
            name = f"{index:06d}_{side}"
            spec = specs[i].float().cpu().numpy()
            np.save(out / "spectrograms" / f"{name}.npy", spec, allow_pickle=False)
            write_wav(out / "audio" / f"{name}.wav", codec.decode(spec, seed=index))
            row[f"{side}_spectrogram"], row[side] = f"spectrograms/{name}.npy", f"audio/{name}.wav"
        lines.append(json.dumps(row))
        index += 1
    (out / difforge.PAIRS_FILE).write_text("\n".join(lines) + ("\n" if lines else ""))
    return out / difforge.PAIRS_FILE

