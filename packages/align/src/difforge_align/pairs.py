"""Preference pairs built offline from a model's own samples ranked by a reward, with DCPO's
caption strategies; written in the core's pairs contract (``difforge.PAIRS_FILE``): each sample as
a PNG preview and, for any domain, as a safetensors file (``*_sample``).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from difforge import PAIRS_FILE, load_backbone, read_pairs
from difforge.plugin_api import (
    SAMPLE_FILE_KEY,
    DataError,
    atomic_save_safetensors,
    get_registry,
    read_pair_image,
    to_uint8,
)


@torch.no_grad()
def build_preference_pairs(
    backbone,
    prompts: Sequence[str],
    reward,
    out_dir: str | Path,
    *,
    samples_per_prompt: int = 4,
    num_steps: int = 25,
    guidance_scale: float = 4.0,
    seed: int = 0,
    min_margin: float = 1e-6,
    captions: DualCaptions | None = None,
) -> Path:
    """Sample ``samples_per_prompt`` samples per prompt, score them with ``reward`` and write
    the best-vs-worst pair of each prompt (skipped when the scores differ by less than
    ``min_margin``): each sample as a safetensors file (``samples/``, any domain) and, when it
    is an image, as a PNG (``images/``). ``captions`` (see :func:`dual_captions`) adds DCPO's
    caption of each image. Returns the ``pairs.jsonl`` path."""
    if samples_per_prompt < 2:
        raise ValueError("samples_per_prompt: at least 2 samples are needed to form a pair")
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    rows, counter = [], 0
    for prompt in prompts:
        images = backbone.sample([prompt] * samples_per_prompt, num_steps=num_steps, guidance_scale=guidance_scale,
                                 generator=generator)
        scores = reward(images, [prompt] * samples_per_prompt).float()
        best, worst = int(scores.argmax()), int(scores.argmin())
        if scores[best] - scores[worst] < min_margin:
            continue
        row: dict[str, Any] = {"caption": prompt}
        for side, index in (("chosen", best), ("rejected", worst)):
            row[side], row[f"{side}_sample"] = write_sample(images[index], out, counter)
            row[f"{side}_score"] = float(scores[index])
            counter += 1
        if captions is not None:
            row["caption_chosen"] = captions.chosen(prompt, images[best])
            row["caption_rejected"] = captions.rejected(prompt, images[worst], rng)
        rows.append(row)
    if not rows:
        name = getattr(reward, "name", reward)
        raise ValueError(f"reward {name!r} scored every sample of every prompt alike; no pairs")
    target = out / PAIRS_FILE
    target.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return target


def write_sample(sample: torch.Tensor, out: Path, index: int) -> tuple[str, str]:
    """Write one sample of a pair: ``samples/<index>.safetensors`` and, for an image (C, H, W)
    with 1 or 3 channels, its PNG ``images/<index>.png``; returns ``(file the row names,
    sample file)`` relative to ``out`` (the PNG, or the sample file when there is no image)."""
    from PIL import Image

    sample_name = f"samples/{index:06d}.safetensors"
    (out / "samples").mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors({SAMPLE_FILE_KEY: sample.float()}, out / sample_name)
    if sample.ndim != 3 or sample.shape[0] not in (1, 3):
        return sample_name, sample_name
    image_name = f"images/{index:06d}.png"
    (out / "images").mkdir(parents=True, exist_ok=True)
    array = to_uint8(sample[None])[0]
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(out / image_name)
    return image_name, sample_name


def perturb_caption(caption: str, word_groups: Sequence[Sequence[str]], level: str, rng: random.Random) -> str:
    """DCPO's perturbation strategy: replace attribute words of ``caption`` by others of the
    same group (e.g. a colour by another colour), so the caption no longer describes the
    image it came with. ``weak`` changes one word, ``medium`` half of them, ``strong`` all."""
    levels = {"weak", "medium", "strong"}
    if level not in levels:
        raise ValueError(f"perturbation level {level!r}; known: {', '.join(sorted(levels))}")
    group_of = {w: tuple(g) for g in word_groups for w in g}
    words = caption.split(" ")
    slots = [i for i, w in enumerate(words) if w.strip(",") in group_of and len(group_of[w.strip(",")]) > 1]
    if not slots:
        return caption
    count = {"weak": 1, "medium": max(1, len(slots) // 2), "strong": len(slots)}[level]
    for i in rng.sample(slots, count):
        word = words[i].strip(",")
        replacement = rng.choice([w for w in group_of[word] if w != word])
        words[i] = words[i].replace(word, replacement)
        if i > 0 and words[i - 1].lower() in ("a", "an"):
            article = "an" if replacement[:1].lower() in "aeiou" else "a"
            words[i - 1] = article.capitalize() if words[i - 1][0].isupper() else article
    return " ".join(words)


@dataclass(frozen=True)
class DualCaptions:
    """DCPO's two captions of a preference pair, by one of its three strategies:

    - perturbation (``perturb`` alone): the chosen image keeps the prompt; the rejected image
      gets the prompt with words swapped within ``word_groups``;
    - captioning (``describe`` alone, a captioner: images in [-1, 1] -> captions): each image
      gets the captioner's description of itself, as the authors' Pick-Double Caption
      dataset does;
    - hybrid (both): each image's description, the rejected one's perturbed.
    """

    perturb: str | None = None
    word_groups: tuple[tuple[str, ...], ...] = ()
    describe: Callable[[torch.Tensor], list[str]] | None = None

    def __post_init__(self) -> None:
        if self.perturb is None and self.describe is None:
            raise ValueError("DualCaptions: give perturb, describe (a captioner) or both")
        if self.perturb is not None and not self.word_groups:
            raise ValueError("perturb: DCPO's perturbation needs word_groups (words that may replace each other)")

    def chosen(self, prompt: str, image: torch.Tensor) -> str:
        """The chosen image's caption: its description, or the prompt when there is no captioner."""
        return self.describe(image[None])[0] if self.describe is not None else prompt

    def rejected(self, prompt: str, image: torch.Tensor, rng: random.Random) -> str:
        """The rejected image's caption: as :meth:`chosen`'s, perturbed when asked."""
        caption = self.chosen(prompt, image)
        return perturb_caption(caption, self.word_groups, self.perturb, rng) if self.perturb is not None else caption


def dual_captions(*, perturb: str | None = None, word_groups: Sequence[Sequence[str]] = (),
                  describe: Callable[[torch.Tensor], list[str]] | None = None) -> DualCaptions | None:
    """The :class:`DualCaptions` strategy these arguments select; ``None`` when neither
    ``perturb`` nor ``describe`` is given (pairs without DCPO captions)."""
    if perturb is None and describe is None:
        return None
    return DualCaptions(perturb, tuple(tuple(g) for g in word_groups), describe)


def recaption_pairs(source: str | Path, out_dir: str | Path, captions: DualCaptions, *, seed: int = 0) -> Path:
    """The pairs at ``source`` (difforge layout) with DCPO's captions rewritten by ``captions``
    (see :func:`dual_captions`; the prompt is each row's ``caption``), written to
    ``out_dir/pairs.jsonl`` without copying the images (their paths are made relative to
    ``out_dir``): one set of sampled pairs serves every DCPO caption strategy. Returns the
    ``pairs.jsonl`` path."""
    import os

    root, rows = read_pairs(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    written = []
    for row in rows:
        row = dict(row)
        row["caption_chosen"] = captions.chosen(row["caption"], read_pair_image(root, row["chosen"]))
        row["caption_rejected"] = captions.rejected(row["caption"], read_pair_image(root, row["rejected"]), rng)
        for key in ("chosen", "rejected"):
            row[key] = Path(os.path.relpath((root / row[key]).resolve(), out.resolve())).as_posix()
        written.append(row)
    target = out / PAIRS_FILE
    target.write_text("".join(json.dumps(r) + "\n" for r in written))
    return target


def chosen_images(source: str | Path, out_dir: str | Path) -> Path:
    """The preferred image of every pair at ``source`` (difforge layout) copied to
    ``out_dir/images/`` with its prompt in ``out_dir/metadata.jsonl``: an ``image-folder``
    dataset for the baseline every preference method must beat, plain denoising fine-tuning on
    the chosen images (``examples/configs/alignment/sft-dpo.yaml``). Pairs whose samples are not
    images are refused. Returns ``out_dir``."""
    root, rows = read_pairs(source)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    meta = []
    for i, row in enumerate(rows):
        image = root / row["chosen"]
        if image.suffix.lower() != ".png" or not image.is_file():
            raise DataError(f"{root / PAIRS_FILE}: pair {i + 1}: chosen {row['chosen']!r} is not a PNG image")
        name = f"images/{i:06d}.png"
        shutil.copyfile(image, out / name)
        meta.append({"file_name": name, "text": row["caption"]})
    (out / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    return out




def preference_pairs(model: str | Path, prompts: Sequence[str], reward: str, out: str | Path, *,
                     samples_per_prompt: int = 4, num_steps: int = 25, guidance_scale: float = 4.0, seed: int = 0,
                     perturb: str | None = None, word_groups: Sequence[Sequence[str]] = (),
                     captioner: str | None = None) -> Path:
    """Build pairwise preference data from ``model``'s own samples ranked by the registered
    ``reward`` (what ``difforge preference-pairs`` runs). Each pair can also get DCPO's two
    captions, by one of its three strategies: ``perturb`` (``weak`` / ``medium`` / ``strong``)
    swaps words of the prompt within ``word_groups`` for the rejected image; ``captioner`` (a
    registered captioner) describes each image; both together perturb the rejected image's
    description (DCPO's hybrid). Returns the ``pairs.jsonl`` path."""
    scorer = get_registry("rewards").get(reward)
    describe = get_registry("captioners").get(captioner) if captioner is not None else None
    captions = dual_captions(perturb=perturb, word_groups=word_groups, describe=describe)
    return build_preference_pairs(load_backbone(model), list(prompts), scorer, out,
                                  samples_per_prompt=samples_per_prompt, num_steps=num_steps,
                                  guidance_scale=guidance_scale, seed=seed, captions=captions)
