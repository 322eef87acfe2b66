"""The ``spectrogram`` sample renderer: each generated log-mel spectrogram drawn as a grid tile,
the spectrogram (low bands at the bottom, magma colours) above the waveform it decodes to
(Griffin-Lim), so a grid of music samples can be read like a grid of images."""

from __future__ import annotations

import numpy as np

WAVE_ROWS = 24
BACKGROUND, WAVE = (255, 255, 255), (40, 40, 40)


def waveform_strip(audio: np.ndarray, width: int, rows: int = WAVE_ROWS) -> np.ndarray:
    """A (rows, width, 3) uint8 picture of ``audio``: per column, the min-max envelope of its samples."""
    strip = np.full((rows, width, 3), BACKGROUND, dtype=np.uint8)
    peak = float(np.abs(audio).max()) or 1.0
    for col, chunk in enumerate(np.array_split(audio / peak, width)):
        if chunk.size == 0:
            continue
        top = int(round((1 - chunk.max()) / 2 * (rows - 1)))
        bottom = int(round((1 - chunk.min()) / 2 * (rows - 1)))
        strip[top : bottom + 1, col] = WAVE
    return strip


def render_spectrograms(samples) -> np.ndarray:
    """``(N, 1, mels, frames)`` spectrograms in [-1, 1] -> ``(N, mels + 2 + WAVE_ROWS, frames, 3)``
    uint8 tiles: the spectrogram over its decoded waveform."""
    import torch
    from matplotlib import colormaps

    from .codec import MelCodec

    specs = samples.detach().float().cpu() if isinstance(samples, torch.Tensor) else torch.as_tensor(samples)
    if specs.ndim != 4 or specs.shape[1] != 1:
        raise ValueError(f"the 'spectrogram' renderer draws (N, 1, mels, frames) spectrograms, "
                         f"got {tuple(specs.shape)}")
    codec, magma = MelCodec(), colormaps["magma"]
    tiles = []
    for spec in specs[:, 0].clamp(-1, 1).numpy():
        image = (magma((spec[::-1] + 1) / 2)[..., :3] * 255).astype(np.uint8)  # low mel bands at the bottom
        gap = np.full((2, spec.shape[1], 3), BACKGROUND, dtype=np.uint8)
        tiles.append(np.concatenate([image, gap, waveform_strip(codec.decode(spec), spec.shape[1])]))
    return np.stack(tiles)


__all__ = ["render_spectrograms", "waveform_strip"]
