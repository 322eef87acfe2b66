"""Waveform ↔ normalised log-mel spectrogram ("image" of one channel), with librosa.

The spectrogram is ``(1, n_mels, NUM_FRAMES)`` with values in [-1, 1]: power in dB (relative to
``ref_power``) clipped to ``[-top_db, 0]`` and mapped linearly. Inversion is librosa's mel
inversion (NNLS to a linear spectrogram, then Griffin-Lim phase recovery).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import librosa
import numpy as np

from .music import HOP_LENGTH, NUM_FRAMES, NUM_SAMPLES, SAMPLE_RATE


@dataclass(frozen=True)
class MelCodec:
    """Log-mel analysis and Griffin-Lim synthesis with fixed parameters."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop_length: int = HOP_LENGTH
    n_mels: int = 64
    fmin: float = 150.0
    fmax: float = 2500.0
    top_db: float = 80.0
    ref_power: float = 5e4  # 0 dB; the loudest synthesised frames reach about -1 dB
    griffin_lim_iters: int = 64

    def _mel_kwargs(self) -> dict:
        return dict(sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin,
                    fmax=self.fmax, htk=True, norm=None)

    def mel_power(self, audio: np.ndarray) -> np.ndarray:
        """(n_mels, NUM_FRAMES) mel power spectrogram of a waveform."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be one channel (samples,), got shape {audio.shape}")
        mel = librosa.feature.melspectrogram(y=audio, hop_length=self.hop_length, power=2.0, **self._mel_kwargs())
        return _fit_frames(mel, NUM_FRAMES)

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Waveform -> (1, n_mels, NUM_FRAMES) float32 in [-1, 1]."""
        return self.normalize(self.mel_power(audio))

    def normalize(self, mel_power: np.ndarray) -> np.ndarray:
        """Mel power -> the model's [-1, 1] spectrogram (adds the channel axis)."""
        db = librosa.power_to_db(mel_power, ref=self.ref_power, amin=1e-10, top_db=None)
        db = np.clip(db, -self.top_db, 0.0)
        return (db / (self.top_db / 2) + 1.0).astype(np.float32)[None]

    def to_mel_power(self, spectrogram) -> np.ndarray:
        """The model's spectrogram ((1,) n_mels × frames, tensor or array) -> mel power."""
        spec = _numpy(spectrogram)
        if spec.ndim == 3:
            if spec.shape[0] != 1:
                raise ValueError(f"a spectrogram has one channel, got shape {spec.shape}")
            spec = spec[0]
        if spec.ndim != 2 or spec.shape[0] != self.n_mels:
            raise ValueError(f"expected a ({self.n_mels}, frames) spectrogram, got shape {spec.shape}")
        db = (np.clip(spec, -1.0, 1.0) - 1.0) * (self.top_db / 2)
        return librosa.db_to_power(db, ref=self.ref_power)

    @cached_property
    def mel_basis(self) -> np.ndarray:
        """(n_mels, 1 + n_fft/2) the mel filterbank."""
        return librosa.filters.mel(**self._mel_kwargs())

    @cached_property
    def _inverse_basis(self) -> np.ndarray:
        return np.linalg.pinv(self.mel_basis)

    def linear_power(self, spectrogram) -> np.ndarray:
        """(1 + n_fft/2, frames) linear power spectrogram recovered from the mel bands with the
        filterbank's pseudo-inverse, clipped at zero (librosa's NNLS ``mel_to_stft`` gives the
        same chroma but takes tens of seconds per clip with unnormalised filters)."""
        return np.maximum(self._inverse_basis @ self.to_mel_power(spectrogram), 0.0)

    def linear_magnitude(self, spectrogram) -> np.ndarray:
        """(1 + n_fft/2, frames) linear magnitude recovered by librosa's non-negative least
        squares mel inversion (run on the area-normalised filterbank, where it converges fast)."""
        power = self.to_mel_power(spectrogram)
        kwargs = self._mel_kwargs() | {"norm": "slaney"}
        area = librosa.filters.mel(**kwargs).sum(axis=1) / self.mel_basis.sum(axis=1)
        kwargs.pop("n_mels")
        return librosa.feature.inverse.mel_to_stft(area[:, None] * power, power=2.0, **kwargs)

    def decode(self, spectrogram, seed: int = 0) -> np.ndarray:
        """Spectrogram -> waveform of NUM_SAMPLES samples (NNLS magnitude, then Griffin-Lim with a
        seeded phase initialisation)."""
        magnitude = self.linear_magnitude(spectrogram)
        magnitude = np.concatenate([magnitude, magnitude[:, -1:]], axis=1)  # librosa frames = 1 + samples / hop
        audio = librosa.griffinlim(magnitude, n_iter=self.griffin_lim_iters, hop_length=self.hop_length,
                                   n_fft=self.n_fft, length=NUM_SAMPLES, init="random",
                                   random_state=np.random.RandomState(seed))
        return audio.astype(np.float32)


def _fit_frames(x: np.ndarray, frames: int) -> np.ndarray:
    if x.shape[-1] >= frames:
        return x[..., :frames]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, frames - x.shape[-1])])


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def spectral_convergence(reference: np.ndarray, estimate: np.ndarray) -> float:
    """‖|S_ref| − |S_est|‖_F / ‖|S_ref|‖_F over linear STFT magnitudes (lower is better)."""
    a = np.abs(librosa.stft(reference, n_fft=1024, hop_length=HOP_LENGTH))
    b = np.abs(librosa.stft(estimate, n_fft=1024, hop_length=HOP_LENGTH))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12))


def magnitude_snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-noise ratio (dB) of the STFT magnitudes: phase-blind, as fits Griffin-Lim."""
    a = np.abs(librosa.stft(reference, n_fft=1024, hop_length=HOP_LENGTH))
    b = np.abs(librosa.stft(estimate, n_fft=1024, hop_length=HOP_LENGTH))
    return float(10 * np.log10((a**2).sum() / max(((a - b) ** 2).sum(), 1e-20)))
