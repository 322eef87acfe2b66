"""Music ControlNet's control inputs: melody, dynamics and rhythm as time-varying signals,
any subset of them, each optionally given on only part of the timeline.

A :class:`Controls` holds the three signals of a clip (as :mod:`difforge_audio.features`
extracts them) and a per-control mask saying in which frames each is specified. The ControlNet
sees them as one ``(CONTROL_CHANNELS, n_mels, frames)`` image aligned with the spectrogram:

- melody: each frame's pitch class drawn on the mel bands of that pitch class in every octave
  (a chroma-to-mel projection), so a convolution finds it where the notes' partials go; a
  pitch class repeated over the frequency axis (the first design) left the ControlNet blind
  to melody (accuracy at chance, measured);
- dynamics and rhythm (onset activation): constant along the frequency axis;
- one mask channel per control (1 where it is given).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import features
from .codec import MelCodec
from .music import NUM_FRAMES

CONTROL_NAMES = ("melody", "dynamics", "rhythm")
CONTROL_CHANNELS = 1 + 1 + 1 + len(CONTROL_NAMES)
PITCH_WIDTH = 0.6  # semitones: the Gaussian width of a pitch class on the mel axis
DYNAMICS_RANGE_DB = (-40.0, 10.0)  # mapped to [-1, 1] in the control image


@dataclass
class Controls:
    """The melody (pitch class per frame, -1 silent), dynamics (dB per frame) and rhythm (onset
    activation per frame) of a clip, with a boolean mask per control (frames where it is given)."""

    melody: np.ndarray
    dynamics: np.ndarray
    rhythm: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frames = len(self.melody)
        for name in CONTROL_NAMES:
            signal = getattr(self, name)
            if signal.shape != (frames,):
                raise ValueError(f"control {name!r} must have shape ({frames},), got {signal.shape}")
        for name in list(self.masks):
            if name not in CONTROL_NAMES:
                raise ValueError(f"unknown control {name!r}; known: {', '.join(CONTROL_NAMES)}")
        for name in CONTROL_NAMES:
            mask = np.asarray(self.masks.get(name, np.ones(frames, bool)), dtype=bool)
            if mask.shape != (frames,):
                raise ValueError(f"mask of control {name!r} must have shape ({frames},), got {mask.shape}")
            self.masks[name] = mask

    @property
    def num_frames(self) -> int:
        return len(self.melody)

    def only(self, names: Iterable[str]) -> Controls:
        """These controls with every other one unspecified."""
        names = set(names)
        unknown = names - set(CONTROL_NAMES)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; known: {', '.join(CONTROL_NAMES)}")
        masks = {n: self.masks[n] & (n in names) for n in CONTROL_NAMES}
        return Controls(self.melody.copy(), self.dynamics.copy(), self.rhythm.copy(), masks)

    def within(self, start: int, stop: int) -> Controls:
        """These controls specified only in frames ``start .. stop`` (the rest left to the model)."""
        span = np.zeros(self.num_frames, bool)
        span[start:stop] = True
        return Controls(self.melody.copy(), self.dynamics.copy(), self.rhythm.copy(),
                        {n: self.masks[n] & span for n in CONTROL_NAMES})

    def image(self, n_mels: int) -> torch.Tensor:
        """The ``(CONTROL_CHANNELS, n_mels, frames)`` ControlNet input; unspecified frames are 0."""
        frames = self.num_frames
        image = np.zeros((CONTROL_CHANNELS, n_mels, frames), np.float32)
        voiced = (self.melody >= 0) & self.masks["melody"]
        pitch_map = chroma_to_mel(n_mels)  # (12, n_mels)
        image[0][:, voiced] = pitch_map[self.melody[voiced]].T
        low, high = DYNAMICS_RANGE_DB
        image[1] = np.clip(2 * (self.dynamics - low) / (high - low) - 1, -1, 1) * self.masks["dynamics"]
        image[2] = self.rhythm * self.masks["rhythm"]
        for i, name in enumerate(CONTROL_NAMES):
            image[3 + i] = self.masks[name]
        return torch.from_numpy(image)


def chroma_to_mel(n_mels: int, codec: MelCodec | None = None) -> np.ndarray:
    """(12, n_mels), read-only: how strongly each mel band (by its centre frequency) belongs to
    each pitch class, a Gaussian in circular semitone distance."""
    codec = codec or MelCodec()
    if n_mels != codec.n_mels:
        raise ValueError(f"controls are drawn for {codec.n_mels} mel bands, got n_mels={n_mels}")
    return _pitch_class_map(n_mels, float(codec.fmin), float(codec.fmax))


@functools.lru_cache(maxsize=8)
def _pitch_class_map(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa

    centres = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=fmax, htk=True)[1:-1]
    semitone = 12 * np.log2(centres / 440.0) + 9  # pitch class 0 = C
    distance = (semitone[None, :] - np.arange(12)[:, None] + 6) % 12 - 6
    pitch_map = np.exp(-0.5 * (distance / PITCH_WIDTH) ** 2).astype(np.float32)
    pitch_map.flags.writeable = False
    return pitch_map


def extract_controls(spectrogram, codec: MelCodec | None = None) -> Controls:
    """Melody, dynamics and rhythm of a spectrogram, all specified everywhere."""
    times = features.onsets(spectrogram, codec)
    return Controls(
        melody=features.melody(spectrogram, codec),
        dynamics=features.dynamics(spectrogram, codec).astype(np.float32),
        rhythm=features.onset_activation(times, NUM_FRAMES),
    )


def random_masks(rng: np.random.Generator, frames: int = NUM_FRAMES) -> dict[str, np.ndarray]:
    """Training-time masks, as Music ControlNet trains for any subset of controls, partially
    specified in time: each control is absent (25 %), given everywhere (35 %) or given on all but
    a random span of 25-75 % of the timeline, or only on such a span (20 % each)."""
    masks = {}
    for name in CONTROL_NAMES:
        draw = rng.random()
        mask = np.ones(frames, bool)
        if draw < 0.25:
            mask[:] = False
        elif draw >= 0.6:
            length = int(rng.integers(frames // 4, 3 * frames // 4 + 1))
            start = int(rng.integers(0, frames - length + 1))
            span = np.zeros(frames, bool)
            span[start:start + length] = True
            mask = span if draw >= 0.8 else ~span
        masks[name] = mask
    return masks
