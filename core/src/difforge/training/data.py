"""Datasets and the resumable, shard-aware batch order of the training loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset, Sampler

from ..errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}

#: the largest image (width x height) a dataset decodes unless told otherwise: a 4096² photo
#: passes, a decompression bomb is refused from its header before a byte is decoded
DEFAULT_MAX_PIXELS = 4096 * 4096
#: full scale of the integer modes Pillow keeps at more than 8 bits (16-bit PNG/TIFF)
HIGH_BIT_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}

#: the batch key of training samples in any domain (images, spectrograms, clips, volumes, action
#: chunks); ``_chosen`` / ``_rejected`` suffixes for preference pairs. Image datasets may use the
#: diffusers name ``pixel_values`` instead: objectives read either through :func:`batch_samples`.
SAMPLE_KEY = "sample"
SAMPLE_ALIAS = "pixel_values"


def batch_samples(batch: dict[str, Any], role: str = "") -> torch.Tensor:
    """The samples of a batch or item under ``sample`` (or its alias ``pixel_values``);
    ``role`` ``"chosen"`` / ``"rejected"`` picks one side of a preference pair."""
    suffix = f"_{role}" if role else ""
    for key in (SAMPLE_KEY + suffix, SAMPLE_ALIAS + suffix):
        if key in batch:
            return batch[key]
    raise DataError(f"the batch has no {SAMPLE_KEY + suffix!r} (or {SAMPLE_ALIAS + suffix!r}) item; "
                    f"it has: {', '.join(sorted(batch)) or 'nothing'}")


def read_text(path: Path) -> str:
    """A UTF-8 text file's contents; unreadable or non-UTF-8 bytes are a one-line
    :class:`DataError` naming the file and the byte."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None


def dataset_attribute(dataset: Dataset, name: str, default: Any = None) -> Any:
    """``name`` of ``dataset`` or of the first dataset it wraps (``.dataset``) that has it."""
    seen: set[int] = set()
    while dataset is not None and id(dataset) not in seen:
        seen.add(id(dataset))
        if hasattr(dataset, name):
            return getattr(dataset, name)
        dataset = getattr(dataset, "dataset", None)
    return default


def is_sample_key(key: str) -> bool:
    """Whether a batch key holds samples (``sample``, ``pixel_values``, with or without a role suffix)."""
    return any(key == base or key.startswith(base + "_") for base in (SAMPLE_KEY, SAMPLE_ALIAS))


class ImageFolderOptions(BaseModel):
    """Options of the ``image-folder`` dataset."""

    model_config = ConfigDict(extra="forbid")

    path: str
    resolution: int = Field(32, ge=4)
    caption: str | None = Field(None, description="one caption for every image (DreamBooth-style)")
    repeats: int = Field(1, ge=1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="refuse images larger than this (width x "
                                                                    "height) before decoding them")


class ImageFolderDataset(Dataset):
    """Images in a folder; captions from ``metadata.jsonl`` (``file_name``/``text``, as in the
    diffusers/datasets ``imagefolder`` layout), from a same-name ``.txt``, or one fixed caption.

    Items: ``{"pixel_values": (3, R, R) float in [-1, 1], "caption": str, "path": str}``.
    """

    options_model = ImageFolderOptions

    def __init__(self, path: str, resolution: int = 32, caption: str | None = None, repeats: int = 1,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"data.options.path: {root} is not a directory")
        self.root, self.resolution, self.max_pixels = root, resolution, max_pixels
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        captions: dict[str, str] = {}
        meta = root / "metadata.jsonl"
        if meta.exists():
            for lineno, line in enumerate(read_text(meta).splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{meta}:{lineno}: not a JSON line ({exc.msg})") from None
                if not (isinstance(row, dict) and isinstance(row.get("file_name"), str)
                        and isinstance(row.get("text"), str)):
                    raise DataError(f"{meta}:{lineno}: expected an object with string fields file_name and text")
                captions[row["file_name"]] = row["text"]
        self.captions = captions
        self.fixed_caption = caption
        self.repeats = repeats

    def __len__(self) -> int:
        return len(self.files) * self.repeats

    def caption_for(self, file: Path) -> str:
        """The caption of ``file``: the fixed caption, metadata.jsonl, a ``.txt`` sidecar, or ""."""
        if self.fixed_caption is not None:
            return self.fixed_caption
        rel = file.relative_to(self.root).as_posix()
        if rel in self.captions:
            return self.captions[rel]
        txt = file.with_suffix(".txt")
        return read_text(txt).strip() if txt.exists() else ""

    def __getitem__(self, index: int) -> dict[str, Any]:
        file = self.files[index % len(self.files)]
        pixels = read_image(file, self.resolution, self.max_pixels)
        return {"pixel_values": pixels, "caption": self.caption_for(file), "path": str(file)}


def load_image(file, resolution: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read an image (a path or a binary file object) as RGB with its EXIF orientation applied,
    resize the short side and centre-crop to ``resolution`` (default: its own short side);
    (3, R, R) in [-1, 1]. 16-bit and float images keep their range (scaled from 65535, or
    read as [0, 1]); an image over ``max_pixels`` is refused from its header, before decoding."""
    from PIL import Image, ImageOps

    with Image.open(file) as im:
        width, height = im.size
        if max_pixels is not None and width * height > max_pixels:
            raise DataError(f"{width}x{height} pixels is more than the limit of {max_pixels} (max_pixels); "
                            "refusing to decode it")
        im.load()
        im = ImageOps.exif_transpose(im)
        return image_to_tensor(im, resolution or min(im.size))


def read_image(file, resolution: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> torch.Tensor:
    """:func:`load_image`, with any failure (missing, truncated, not an image, too large) a
    one-line :class:`DataError` naming the file (or ``name``)."""
    try:
        return load_image(file, resolution, max_pixels)
    except Exception as exc:  # noqa: BLE001 - any decoder error becomes a DataError
        raise DataError(f"cannot read image {name or file}: {exc}".splitlines()[0]) from None


def image_to_tensor(im, resolution: int) -> torch.Tensor:
    """A PIL image as RGB, short side resized and centre-cropped to ``resolution``; (3, R, R) in
    [-1, 1]. 8-bit images are resized by Pillow; 16-bit integer and float images are scaled to
    [0, 1] first and resized in float, so their extra precision is kept rather than clipped."""
    from PIL import Image

    if im.mode in HIGH_BIT_MODES or im.mode == "F":
        return _high_bit_to_tensor(im, resolution)
    im = im.convert("RGB")
    w, h = im.size
    scale = resolution / min(w, h)
    if scale != 1:
        im = im.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - resolution) // 2, (h - resolution) // 2
    im = im.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _high_bit_to_tensor(im, resolution: int) -> torch.Tensor:
    array = np.asarray(im, dtype=np.float32)
    if im.mode == "F":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError(f"a float image must hold values in [0, 1], got [{array.min():g}, {array.max():g}]")
    else:
        array = array / HIGH_BIT_MODES[im.mode]
    gray = torch.from_numpy(np.clip(array, 0.0, 1.0))[None, None]
    h, w = gray.shape[-2:]
    scale = resolution / min(w, h)
    if scale != 1:
        size = (max(resolution, round(h * scale)), max(resolution, round(w * scale)))
        gray = torch.nn.functional.interpolate(gray, size=size, mode="bicubic", antialias=True, align_corners=False)
    h, w = gray.shape[-2:]
    top, left = (h - resolution) // 2, (w - resolution) // 2
    gray = gray[0, :, top:top + resolution, left:left + resolution].clamp(0, 1)
    return (gray * 2 - 1).expand(3, -1, -1).contiguous()


@dataclass
class CorruptSample:
    """Stands in for an unreadable sample when ``data.on_corrupt: skip``."""

    reason: str


class SkipCorrupt(Dataset):
    """Wraps a dataset so that a :class:`DataError` yields a :class:`CorruptSample`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except DataError as exc:
            return CorruptSample(str(exc))


def collate(samples: list[Any]) -> dict[str, Any]:
    """Stack tensors, list everything else; corrupt samples are dropped and counted."""
    good = [s for s in samples if not isinstance(s, CorruptSample)]
    batch: dict[str, Any] = {"num_skipped": len(samples) - len(good)}
    if not good:
        return batch
    for key in good[0]:
        values = [s[key] for s in good]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of one epoch: a permutation seeded by ``(seed, epoch)``, this rank's shard of it,
    starting at ``start_batch``. The order depends only on these numbers, so a resumed run
    continues at exactly the next batch."""

    def __init__(self, size: int, batch_size: int, seed: int, epoch: int, start_batch: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, epoch
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size

    @staticmethod
    def batches_per_epoch(size: int, batch_size: int, world_size: int) -> int:
        return (size // world_size) // batch_size

    def __len__(self) -> int:
        return self.batches_per_epoch(self.size, self.batch_size, self.world_size) - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        per_rank = self.size // self.world_size
        shard = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        n = self.batches_per_epoch(self.size, self.batch_size, self.world_size)
        for b in range(self.start_batch, n):
            yield shard[b * self.batch_size : (b + 1) * self.batch_size]


class PromptsOptions(BaseModel):
    """Options of the ``prompts`` dataset: inline ``prompts`` or a ``file`` with one per line."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[str] | None = None
    file: str | None = None
    repeats: int = Field(1, ge=1)


class PromptsDataset(Dataset):
    """Prompts only, for objectives that generate their own images (RL, reward backpropagation).

    Items: ``{"caption": str}``.
    """

    options_model = PromptsOptions
    provides = frozenset({"captions"})

    def __init__(self, **options: Any) -> None:
        o = PromptsOptions(**options)
        if (o.prompts is None) == (o.file is None):
            raise DataError("data.options: give exactly one of prompts or file")
        if o.file is not None:
            path = Path(o.file)
            if not path.exists():
                raise DataError(f"data.options.file: {path} does not exist")
            prompts = [line.strip() for line in read_text(path).splitlines() if line.strip()]
        else:
            prompts = list(o.prompts)
        if not prompts:
            raise DataError(f"data.options: no prompts in {o.file or 'prompts'}")
        self.prompts = prompts * o.repeats

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"caption": self.prompts[index]}

