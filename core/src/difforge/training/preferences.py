"""Pairwise preference data, the file contract: the difforge layout, or Pick-a-Pic's, read into
pairs of samples (building pairs from a model's own samples is ``difforge-align``'s).

The difforge layout is a folder with ``pairs.jsonl`` and the files beside it; each line is::

    {"caption": "...", "chosen": "images/000003.png", "rejected": "images/000001.png",
     "chosen_sample": "samples/000003.safetensors", "rejected_sample": "samples/000001.safetensors",
     "chosen_score": 0.9, "rejected_score": 0.4,
     "caption_chosen": "...", "caption_rejected": "..."}

``*_sample`` (optional) names a safetensors file holding the sample itself under the key
``sample`` (a spectrogram, a clip, a volume: any domain). A sample that is not an image has no
PNG: ``chosen`` / ``rejected`` then name the sample file too, and the dataset reads it; an
image pair is read from its PNGs, at the dataset's ``resolution``.
``caption_chosen`` / ``caption_rejected`` are optional (DCPO).

The Pick-a-Pic v2 layout is a table (``.parquet``, or ``.jsonl`` with the same columns) with
``caption``, ``jpg_0``, ``jpg_1`` (encoded image bytes, or paths relative to the file) and
``label_0`` (1 when image 0 is preferred, 0.5 for a tie); ties are dropped, as in Diffusion-DPO.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from ..errors import DataError
from .data import DEFAULT_MAX_PIXELS, read_image, read_text

PAIRS_FILE = "pairs.jsonl"
#: the key of the tensor in a pair's sample file
SAMPLE_FILE_KEY = "sample"


# ---------------------------------------------------------------------------------- loading
class PreferencePairsOptions(BaseModel):
    """Options of the ``preference-pairs`` dataset."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a folder holding pairs.jsonl, a pairs .jsonl file, or a Pick-a-Pic .parquet/.jsonl")
    layout: str = Field("auto", pattern="^(auto|difforge|pick-a-pic)$")
    resolution: int = Field(32, ge=4)
    limit: int | None = Field(None, ge=1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="refuse images larger than this (width x "
                                                                    "height) before decoding them")


class PreferencePairsDataset(Dataset):
    """Pairs of samples for one caption, the first preferred.

    Items: ``{"sample_chosen", "sample_rejected", "caption", "caption_chosen",
    "caption_rejected"}``: the samples are the rows' sample files when they have them, else
    their images as (3, R, R) in [-1, 1]; the two captions equal ``caption`` unless the data
    gives separate ones, as DCPO's does.
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
        self.file = path
        #: how many pairs lack their own ``caption_rejected`` (DCPO refuses such data)
        self.pairs_without_rejected_caption = sum(not r.get("caption_rejected") for r in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def _image(self, value: Any) -> torch.Tensor:
        return read_pair_image(self.root, value, self.options.resolution, self.options.max_pixels)

    def _sample(self, row: dict[str, Any], side: str) -> torch.Tensor:
        if row.get(f"{side}_sample") and row[side] == row[f"{side}_sample"]:  # no image: another domain
            return read_sample_file(self.root / row[f"{side}_sample"])
        return self._image(row[side])

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {"sample_chosen": self._sample(row, "chosen"),
                "sample_rejected": self._sample(row, "rejected"),
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
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _check_row(row: dict[str, Any], path: Path, lineno: int) -> dict[str, Any]:
    missing = [k for k in ("caption", "chosen", "rejected") if k not in row]
    if missing:
        raise DataError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
    for key in ("caption", "chosen", "rejected", "caption_chosen", "caption_rejected", "chosen_sample",
                "rejected_sample"):
        optional = key not in ("caption", "chosen", "rejected")
        if key in row and not isinstance(row[key], str) and not (optional and row[key] is None):
            raise DataError(f"{path}:{lineno}: field {key} must be a string, got {type(row[key]).__name__}")
    return row


def _from_pick_a_pic(row: dict[str, Any], path: Path, lineno: int) -> dict[str, Any] | None:
    missing = [k for k in ("caption", "jpg_0", "jpg_1", "label_0") if k not in row]
    if missing:
        raise DataError(f"{path}:{lineno}: missing Pick-a-Pic column(s) {', '.join(missing)}")
    try:
        label = float(row["label_0"])
    except (TypeError, ValueError):
        raise DataError(f"{path}:{lineno}: label_0 must be 1, 0 or 0.5, got {row['label_0']!r}") from None
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


def read_pair_image(root: Path, value: bytes | str, resolution: int | None = None,
                    max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """A pair's image (a path relative to ``root``, or encoded bytes) as (3, R, R) in [-1, 1],
    at ``resolution`` (default: the image's own short side); any decoder error becomes a
    one-line :class:`DataError` naming the file."""
    where = str(root / value) if isinstance(value, str) else "embedded image"
    return read_image(io.BytesIO(value) if isinstance(value, bytes) else root / value, resolution, max_pixels,
                      name=where)


def read_sample_file(path: Path) -> torch.Tensor:
    """The tensor of a pair's sample file (safetensors, key ``sample``); a one-line
    :class:`DataError` naming the file when it is missing or not a sample file."""
    from ..weights import read_safetensors

    tensors, _ = read_safetensors(path, what="sample", error=DataError)
    if SAMPLE_FILE_KEY not in tensors:
        raise DataError(f"sample {path}: no tensor named {SAMPLE_FILE_KEY!r} (has: {', '.join(sorted(tensors))})")
    return tensors[SAMPLE_FILE_KEY]


__all__ = ["PAIRS_FILE", "SAMPLE_FILE_KEY", "PreferencePairsDataset", "pairs_path", "read_pair_image", "read_pairs",
           "read_sample_file"]
