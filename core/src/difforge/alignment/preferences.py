"""Pairwise preference data: built offline from a model's own samples ranked by a reward, or
read from local files in the Pick-a-Pic layout.

The difforge layout is a folder with ``pairs.jsonl`` and the images beside it; each line is::

    {"caption": "...", "chosen": "images/000003.png", "rejected": "images/000001.png",
     "chosen_score": 0.9, "rejected_score": 0.4,
     "caption_chosen": "...", "caption_rejected": "..."}      # the last two optional (DCPO)

The Pick-a-Pic v2 layout is a table (``.parquet``, or ``.jsonl`` with the same columns) with
``caption``, ``jpg_0``, ``jpg_1`` (encoded image bytes, or paths relative to the file) and
``label_0`` (1 when image 0 is preferred, 0.5 for a tie); ties are dropped, as in Diffusion-DPO.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from ..errors import DataError
from ..training.data import load_image

PAIRS_FILE = "pairs.jsonl"


# ---------------------------------------------------------------------------------- building
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
    """Sample ``samples_per_prompt`` images per prompt, score them with ``reward`` and write
    the best-vs-worst pair of each prompt (skipped when the scores differ by less than
    ``min_margin``). ``captions`` (see :func:`dual_captions`) adds DCPO's caption of each
    image. Returns the ``pairs.jsonl`` path."""
    from PIL import Image

    from ..sampling.grid import to_uint8

    if samples_per_prompt < 2:
        raise ValueError("samples_per_prompt: at least 2 samples are needed to form a pair")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
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
        files = []
        for index in (best, worst):
            name = f"images/{counter:06d}.png"
            Image.fromarray(to_uint8(images[index : index + 1])[0]).save(out / name)
            files.append(name)
            counter += 1
        row = {"caption": prompt, "chosen": files[0], "rejected": files[1],
               "chosen_score": float(scores[best]), "rejected_score": float(scores[worst])}
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
        row["caption_chosen"] = captions.chosen(row["caption"], _read_image(root, row["chosen"]))
        row["caption_rejected"] = captions.rejected(row["caption"], _read_image(root, row["rejected"]), rng)
        for key in ("chosen", "rejected"):
            row[key] = Path(os.path.relpath((root / row[key]).resolve(), out.resolve())).as_posix()
        written.append(row)
    target = out / PAIRS_FILE
    target.write_text("".join(json.dumps(r) + "\n" for r in written))
    return target


# ---------------------------------------------------------------------------------- loading
class PreferencePairsOptions(BaseModel):
    """Options of the ``preference-pairs`` dataset."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a folder holding pairs.jsonl, a pairs .jsonl file, or a Pick-a-Pic .parquet/.jsonl")
    layout: str = Field("auto", pattern="^(auto|difforge|pick-a-pic)$")
    resolution: int = Field(32, ge=4)
    limit: int | None = Field(None, ge=1)


class PreferencePairsDataset(Dataset):
    """Pairs of images for one caption, the first preferred.

    Items: ``{"pixel_values_chosen", "pixel_values_rejected": (3, R, R) in [-1, 1], "caption",
    "caption_chosen", "caption_rejected": str}`` (the two captions equal ``caption`` unless
    the data gives separate ones, as DCPO's does).
    """

    options_model = PreferencePairsOptions
    provides = frozenset({"preference_pairs", "captions"})

    def __init__(self, **options: Any) -> None:
        o = self.options = PreferencePairsOptions(**options)
        path = pairs_path(o.path)
        self.root = path.parent
        rows = _read_table(path)
        layout = o.layout
        if layout == "auto":
            layout = "pick-a-pic" if rows and "jpg_0" in rows[0] else "difforge"
        self.rows = [r for r in (_from_pick_a_pic(r, path, i) if layout == "pick-a-pic" else _check_row(r, path, i)
                                 for i, r in enumerate(rows, 1)) if r is not None]
        if o.limit is not None:
            self.rows = self.rows[: o.limit]
        if not self.rows:
            raise DataError(f"{path}: no usable preference pairs")

    def __len__(self) -> int:
        return len(self.rows)

    def _image(self, value: Any) -> torch.Tensor:
        return _read_image(self.root, value, self.options.resolution)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {"pixel_values_chosen": self._image(row["chosen"]),
                "pixel_values_rejected": self._image(row["rejected"]),
                "caption": row["caption"], "caption_chosen": row.get("caption_chosen") or row["caption"],
                "caption_rejected": row.get("caption_rejected") or row["caption"]}


def pairs_path(path: str | Path) -> Path:
    """The pairs table that ``path`` names: the file itself, or ``pairs.jsonl`` in a folder
    (:class:`DataError` naming ``data.options.path`` when it does not exist)."""
    path = Path(path)
    if path.is_dir():
        path = path / PAIRS_FILE
    if not path.exists():
        raise DataError(f"data.options.path: {path} does not exist")
    return path


def read_pairs(path: str | Path) -> tuple[Path, list[dict[str, Any]]]:
    """Rows of a preference-pairs table in the difforge layout (a folder holding ``pairs.jsonl``,
    or a ``.jsonl`` / ``.parquet`` file), each with ``caption``, ``chosen`` and ``rejected``, and
    the folder their relative paths resolve against. Bad input raises :class:`DataError` naming
    the file and line. Plugins whose pairs are not images (audio, video) read them with this."""
    file = pairs_path(path)
    return file.parent, [_check_row(row, file, i) for i, row in enumerate(_read_table(file), 1)]


def _read_table(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        try:
            import pandas as pd

            return pd.read_parquet(path).to_dict("records")
        except ImportError:
            raise DataError(f"{path}: reading parquet needs pandas and pyarrow: "
                            "pip install 'difforge[parquet]'") from None
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from None
    return rows


def _check_row(row: dict[str, Any], path: Path, lineno: int) -> dict[str, Any]:
    missing = [k for k in ("caption", "chosen", "rejected") if k not in row]
    if missing:
        raise DataError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
    return row


def _from_pick_a_pic(row: dict[str, Any], path: Path, lineno: int) -> dict[str, Any] | None:
    missing = [k for k in ("caption", "jpg_0", "jpg_1", "label_0") if k not in row]
    if missing:
        raise DataError(f"{path}:{lineno}: missing Pick-a-Pic column(s) {', '.join(missing)}")
    label = float(row["label_0"])
    if label == 0.5:
        return None
    images = [_image_field(row["jpg_0"]), _image_field(row["jpg_1"])]
    chosen, rejected = images if label == 1.0 else images[::-1]
    return {"caption": row["caption"], "chosen": chosen, "rejected": rejected}


def _image_field(value: Any) -> bytes | str:
    """Pick-a-Pic images are bytes in parquet; in JSON they are base64 text or a relative path."""
    if isinstance(value, dict) and "bytes" in value:
        value = value["bytes"]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value.startswith("base64:"):
        return base64.b64decode(value[len("base64:"):])
    return str(value)


def _read_image(root: Path, value: bytes | str, resolution: int | None = None) -> torch.Tensor:
    """A pair's image (a path relative to ``root``, or encoded bytes) as (3, R, R) in [-1, 1],
    at ``resolution`` (default: the image's own short side); any decoder error becomes a
    one-line :class:`DataError` naming the file."""
    try:
        return load_image(io.BytesIO(value) if isinstance(value, bytes) else root / value, resolution)
    except Exception as exc:  # noqa: BLE001 - any decoder error becomes a DataError
        where = root / value if isinstance(value, str) else "embedded image"
        raise DataError(f"cannot read image {where}: {exc}".splitlines()[0]) from None


__all__ = ["PAIRS_FILE", "DualCaptions", "PreferencePairsDataset", "build_preference_pairs", "dual_captions",
           "pairs_path", "perturb_caption", "read_pairs", "recaption_pairs"]
