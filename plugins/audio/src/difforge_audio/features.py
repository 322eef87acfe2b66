"""Music ControlNet's time-varying controls, extracted from a spectrogram with librosa, and the
metrics that compare them (melody accuracy, dynamics correlation, rhythm F1).

- **melody**: the top pitch class of the chromagram in each frame (-1 where silent);
- **dynamics**: frame energy in dB, smoothed (Savitzky-Golay), as in the paper;
- **rhythm**: onset activations (librosa's spectral-flux onset strength), peaks picked as onsets.
"""

from __future__ import annotations

import librosa
import numpy as np
from scipy.signal import savgol_filter

from .codec import MelCodec
from .music import HOP_LENGTH, SAMPLE_RATE

SILENCE_DB = 40.0  # frames this far below the clip's loudest frame carry no melody
DYNAMICS_WINDOW = 15  # frames of the Savitzky-Golay smoothing (≈ 0.5 s)
RHYTHM_TOLERANCE_S = 0.07
EDGE_FRAMES = 2
ONSET_RANGE_DB = 30.0


def chromagram(spectrogram, codec: MelCodec | None = None) -> np.ndarray:
    """(12, frames) chroma of a model spectrogram (via its recovered linear power)."""
    codec = codec or MelCodec()
    return librosa.feature.chroma_stft(S=codec.linear_power(spectrogram), sr=codec.sample_rate,
                                       n_fft=codec.n_fft, tuning=0.0)


def frame_energy_db(spectrogram, codec: MelCodec | None = None) -> np.ndarray:
    """(frames,) total mel power per frame in dB (relative to the codec's reference)."""
    codec = codec or MelCodec()
    power = codec.to_mel_power(spectrogram).sum(axis=0)
    return 10.0 * np.log10(np.maximum(power, 1e-10) / codec.ref_power)


def melody(spectrogram, codec: MelCodec | None = None) -> np.ndarray:
    """(frames,) top pitch class per frame, -1 in silent frames."""
    pitch = chromagram(spectrogram, codec).argmax(axis=0)
    energy = frame_energy_db(spectrogram, codec)
    pitch[energy < energy.max() - SILENCE_DB] = -1
    return pitch.astype(np.int64)


def dynamics(spectrogram, codec: MelCodec | None = None) -> np.ndarray:
    """(frames,) smoothed frame energy in dB."""
    energy = frame_energy_db(spectrogram, codec)
    return savgol_filter(energy, DYNAMICS_WINDOW, polyorder=1, mode="interp")


def onset_strength(spectrogram, codec: MelCodec | None = None) -> np.ndarray:
    """(frames,) onset activation (spectral flux of the log-mel), scaled to [0, 1]."""
    codec = codec or MelCodec()
    db = librosa.power_to_db(codec.to_mel_power(spectrogram), ref=codec.ref_power)
    db = np.maximum(db, db.max() - ONSET_RANGE_DB)  # low-level spectral splatter is not an onset
    envelope = librosa.onset.onset_strength(S=db, sr=codec.sample_rate, hop_length=codec.hop_length,
                                            center=False)  # the spectrogram is already centred
    envelope = np.pad(envelope, (0, max(0, db.shape[1] - len(envelope))))[: db.shape[1]]
    envelope[-EDGE_FRAMES:] = 0.0  # these frames' analysis windows run past the clip's end
    return envelope / max(float(envelope.max()), 1e-8)


def onsets(spectrogram, codec: MelCodec | None = None) -> np.ndarray:
    """Onset times (s) picked from :func:`onset_strength`."""
    envelope = onset_strength(spectrogram, codec)
    frames = librosa.onset.onset_detect(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP_LENGTH,
                                        backtrack=False, units="frames", delta=0.07, wait=3)
    return librosa.frames_to_time(frames, sr=SAMPLE_RATE, hop_length=HOP_LENGTH)


def onset_activation(times: np.ndarray, num_frames: int, width: float = 1.0) -> np.ndarray:
    """(frames,) rhythm control: a Gaussian bump (σ = ``width`` frames) at each onset."""
    centres = np.asarray(times) * SAMPLE_RATE / HOP_LENGTH
    grid = np.arange(num_frames)[:, None]
    if len(centres) == 0:
        return np.zeros(num_frames, dtype=np.float32)
    return np.exp(-0.5 * ((grid - centres[None]) / width) ** 2).max(axis=1).astype(np.float32)


def melody_accuracy(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of the reference's voiced frames (inside ``mask``) whose pitch class is matched."""
    keep = reference >= 0
    if mask is not None:
        keep &= mask.astype(bool)
    return float((estimate[keep] == reference[keep]).mean()) if keep.any() else float("nan")


def dynamics_correlation(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of two dynamics curves (inside ``mask``)."""
    if mask is not None:
        estimate, reference = estimate[mask.astype(bool)], reference[mask.astype(bool)]
    if len(reference) < 3 or np.std(estimate) < 1e-8 or np.std(reference) < 1e-8:
        return 0.0
    return float(np.corrcoef(estimate, reference)[0, 1])


def rhythm_f1(estimate: np.ndarray, reference: np.ndarray, tolerance: float = RHYTHM_TOLERANCE_S,
              span: tuple[float, float] | None = None) -> float:
    """F1 of estimated vs reference onset times matched one-to-one within ``tolerance`` seconds
    (greedy by distance, as mir_eval's beat F-measure); ``span`` keeps only onsets inside it."""
    estimate, reference = np.asarray(estimate, float), np.asarray(reference, float)
    if span is not None:
        estimate = estimate[(estimate >= span[0]) & (estimate < span[1])]
        reference = reference[(reference >= span[0]) & (reference < span[1])]
    if len(reference) == 0 and len(estimate) == 0:
        return 1.0
    if len(reference) == 0 or len(estimate) == 0:
        return 0.0
    distance = np.abs(estimate[:, None] - reference[None])
    pairs = sorted(zip(*np.nonzero(distance <= tolerance), strict=True), key=lambda ij: distance[ij])
    used_e, used_r, hits = set(), set(), 0
    for i, j in pairs:
        if i not in used_e and j not in used_r:
            used_e.add(i)
            used_r.add(j)
            hits += 1
    precision, recall = hits / len(estimate), hits / len(reference)
    return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)
