"""An analytic caption scorer for the music world: which tempo, register order and dynamics a
spectrogram shows, measured with librosa features (no learned model).

``caption_adherence`` is the share of the caption's attributes a clip satisfies; its ``order``
term (low notes then high notes, or the reverse) is the clip's *event order*, which the Tango 2
style preference data are built around.
"""

from __future__ import annotations

import numpy as np

from . import features
from .codec import MelCodec
from .music import DURATION_S, parse_caption

REGISTER_SPLIT_HZ = 452.0  # between G4 (392 Hz) and C5 (523 Hz), the two registers
FAST_INTERVAL_S = 0.5  # median inter-onset interval below this reads as "fast"
DYNAMICS_SLOPE_DB = 10.0  # change over the clip beyond which it reads as louder / quieter


def _mel_frequencies(codec: MelCodec) -> np.ndarray:
    import librosa

    return librosa.mel_frequencies(n_mels=codec.n_mels, fmin=codec.fmin, fmax=codec.fmax, htk=True)


def fundamental_hz(spectrogram, codec: MelCodec | None = None) -> np.ndarray:
    """(frames,) frequency of the strongest mel band per frame (the fundamental for the world's
    timbres, whose partials fall off as 1/k); NaN in silent frames."""
    codec = codec or MelCodec()
    power = codec.to_mel_power(spectrogram)
    freqs = _mel_frequencies(codec)[power.argmax(axis=0)]
    energy = features.frame_energy_db(spectrogram, codec)
    return np.where(energy >= energy.max() - features.SILENCE_DB, freqs, np.nan)


def register_order(spectrogram, codec: MelCodec | None = None) -> str | None:
    """``rising`` / ``falling`` from the median register of the first and last quarter of the
    clip, ``None`` if unclear."""
    f0 = fundamental_hz(spectrogram, codec)
    edge = len(f0) // 4
    first, second = (float(np.nanmedian(part)) if np.isfinite(part).any() else np.nan
                     for part in (f0[:edge], f0[-edge:]))
    if not (np.isfinite(first) and np.isfinite(second)):
        return None
    if first < REGISTER_SPLIT_HZ <= second:
        return "rising"
    if second < REGISTER_SPLIT_HZ <= first:
        return "falling"
    return None


def tempo(spectrogram, codec: MelCodec | None = None) -> str | None:
    """``fast`` / ``slow`` from the median inter-onset interval, ``None`` with < 2 onsets."""
    times = features.onsets(spectrogram, codec)
    if len(times) < 2:
        return None
    return "fast" if float(np.median(np.diff(times))) < FAST_INTERVAL_S else "slow"


def dynamics_trend(spectrogram, codec: MelCodec | None = None) -> str:
    """``louder`` / ``quieter`` / ``steady`` from the slope through the loud frames of each
    quarter (their 90th energy percentile), so gaps between notes do not count as dynamics."""
    energy = features.frame_energy_db(spectrogram, codec)
    quarters = np.array_split(energy, 4)
    levels = [float(np.percentile(q, 90)) for q in quarters]
    centres = [(i + 0.5) * DURATION_S / 4 for i in range(4)]
    slope = np.polyfit(centres, levels, 1)[0] * DURATION_S
    if slope > DYNAMICS_SLOPE_DB:
        return "louder"
    if slope < -DYNAMICS_SLOPE_DB:
        return "quieter"
    return "steady"


def describe(spectrogram, codec: MelCodec | None = None) -> dict[str, str | None]:
    """The attributes the scorer reads from a spectrogram."""
    return {"tempo": tempo(spectrogram, codec), "order": register_order(spectrogram, codec),
            "dynamics": dynamics_trend(spectrogram, codec)}


def caption_adherence(spectrogram, caption: str, codec: MelCodec | None = None) -> dict[str, float]:
    """Per-attribute agreement (1/0) with what the caption asks for, and their mean (``reward``)."""
    wanted = {k: v for k, v in parse_caption(caption).items() if v is not None and k != "timbre"}
    if not wanted:
        raise ValueError(f"caption {caption!r} asks for no tempo, register order or dynamics")
    seen = describe(spectrogram, codec)
    scores = {key: float(seen[key] == value) for key, value in wanted.items()}
    scores["reward"] = float(np.mean(list(scores.values())))
    return scores
