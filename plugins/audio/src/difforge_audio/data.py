"""Datasets the audio plugin registers: music-world clips as spectrograms, and audio preference
pairs (Tango 2's Audio-Alpaca layout: ``pairs.jsonl`` beside ``.wav`` files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

import difforge

from .codec import MelCodec
from .music import NUM_SAMPLES, SAMPLE_RATE, random_clip


class MusicClipsOptions(BaseModel):
    """Options of the ``music-clips`` dataset."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(1024, ge=1)
    seed: int = 0


class MusicClipsDataset(Dataset):
    """``count`` synthesised clips of the music world; item ``i`` depends only on ``(seed, i)``.

    Items: ``{"sample": (1, 64, 64) log-mel in [-1, 1], "caption": str}``.
    """

    options_model = MusicClipsOptions

    def __init__(self, **options: Any) -> None:
        self.options = MusicClipsOptions(**options)
        self.codec = MelCodec()

    def __len__(self) -> int:
        return self.options.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = random_clip(self.options.seed * 1_000_003 + index)
        return {"sample": torch.from_numpy(self.codec.encode(clip.audio)), "caption": clip.caption}


class MusicControlsOptions(BaseModel):
    """Options of the ``music-controls`` dataset."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(4000, ge=1)
    seed_offset: int = Field(500_000, ge=0,
                             description="clip seeds start here (disjoint from the evaluation references)")
    mask_seed: int = Field(0, ge=0, description="seed of the random control masks")


class MusicControlsDataset(Dataset):
    """Music ControlNet's training data: clips ``seed_offset .. seed_offset + count`` with the
    melody, dynamics and rhythm controls extracted from each, every time an item is read given
    with fresh random masks (:func:`~difforge_audio.controls.random_masks`: any subset of the
    controls, each possibly on only part of the timeline). Items: ``{"sample": (1, mels, frames),
    "caption": str, "controlnet_cond": (CONTROL_CHANNELS, mels, frames)}``. An item's masks are
    drawn from a generator seeded by ``(mask_seed, epoch, index)`` (the loop calls
    :meth:`set_epoch`), so a run is reproducible, resumes exactly and reads the same masks with
    any number of loader workers."""

    options_model = MusicControlsOptions
    provides = frozenset({"images", "captions", "controlnet_cond"})

    def __init__(self, **options: Any) -> None:
        from .controls import extract_controls

        self.options = MusicControlsOptions(**options)
        self.epoch = 0
        codec = MelCodec()
        self.specs, self.captions, self.controls = [], [], []
        for i in range(self.options.count):
            clip = random_clip(self.options.seed_offset + i)
            spec = codec.encode(clip.audio)
            self.specs.append(torch.from_numpy(spec))
            self.captions.append(clip.caption)
            self.controls.append(extract_controls(spec, codec))

    def __len__(self) -> int:
        return self.options.count

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose items are read next (fresh masks every epoch)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .controls import Controls, random_masks

        spec, full = self.specs[index], self.controls[index]
        rng = np.random.default_rng([self.options.mask_seed, self.epoch, int(index)])
        control = Controls(full.melody, full.dynamics, full.rhythm, random_masks(rng)).image(spec.shape[1])
        return {"sample": spec, "caption": self.captions[index], "controlnet_cond": control}


def read_wav(path: Path) -> np.ndarray:
    """A mono clip of the music world's rate and length from a .wav file (clear errors otherwise)."""
    import soundfile

    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - any decoder error becomes one line naming the file
        raise difforge.DataError(f"cannot read audio {path}: {exc}".splitlines()[0]) from None
    if rate != SAMPLE_RATE:
        raise difforge.DataError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz")
    audio = audio.mean(axis=1)
    if len(audio) < NUM_SAMPLES:
        audio = np.pad(audio, (0, NUM_SAMPLES - len(audio)))
    return audio[:NUM_SAMPLES]


def write_wav(path: Path, audio: np.ndarray) -> Path:
    """Write a mono 16-bit .wav at the music world's rate."""
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
    return path


class AudioPreferencePairsOptions(BaseModel):
    """Options of the ``audio-preference-pairs`` dataset."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a folder holding pairs.jsonl, or a pairs .jsonl file")
    limit: int | None = Field(None, ge=1)


class AudioPreferencePairsDataset(Dataset):
    """Pairs of clips for one caption, the first preferred (Tango 2's layout: each line of
    ``pairs.jsonl`` has ``caption``, ``chosen`` and ``rejected`` .wav paths relative to it, and
    optionally ``chosen_spectrogram`` / ``rejected_spectrogram`` ``.npy`` files holding the exact
    generated spectrograms, which are then used instead of re-analysing the audio).

    Items: ``{"sample_chosen", "sample_rejected": (1, 64, 64) in [-1, 1], "caption",
    "caption_chosen", "caption_rejected": str}``, as the core's preference objectives expect.
    """

    options_model = AudioPreferencePairsOptions
    provides = frozenset({"preference_pairs", "captions"})

    def __init__(self, **options: Any) -> None:
        o = self.options = AudioPreferencePairsOptions(**options)
        self.root, self.rows = difforge.read_pairs(o.path)
        self.codec = MelCodec()
        if o.limit is not None:
            self.rows = self.rows[: o.limit]
        if not self.rows:
            raise difforge.DataError(f"{o.path}: no preference pairs")

    def __len__(self) -> int:
        return len(self.rows)

    def _spectrogram(self, row: dict[str, Any], side: str) -> torch.Tensor:
        stored = row.get(f"{side}_spectrogram")
        if stored:
            file = self.root / stored
            try:
                spec = np.load(file, allow_pickle=False)
            except Exception as exc:  # noqa: BLE001
                raise difforge.DataError(f"cannot read spectrogram {file}: {exc}".splitlines()[0]) from None
            expected = (1, self.codec.n_mels, spec.shape[-1])
            if spec.shape != expected or spec.shape[-1] < 1:
                raise difforge.DataError(f"{file}: spectrogram shape {spec.shape}, "
                                         f"expected (1, {self.codec.n_mels}, frames)")
            return torch.from_numpy(spec.astype(np.float32))
        return torch.from_numpy(self.codec.encode(read_wav(self.root / row[side])))

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {"sample_chosen": self._spectrogram(row, "chosen"),
                "sample_rejected": self._spectrogram(row, "rejected"),
                "caption": row["caption"], "caption_chosen": row["caption"], "caption_rejected": row["caption"]}
