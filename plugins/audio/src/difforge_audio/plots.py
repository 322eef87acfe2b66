"""A spectrogram + controls figure for a generated clip (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import features
from .controls import Controls


def plot_clip(path: str | Path, spectrogram, title: str = "", controls: Controls | None = None) -> Path:
    """Write a PNG: the log-mel spectrogram, then the melody, dynamics and onsets read from it
    (lines), with the requested controls where they are given (dots / dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = spectrogram.detach().cpu().numpy() if hasattr(spectrogram, "detach") else np.asarray(spectrogram)
    frames = np.arange(spec.shape[-1])
    fig, axes = plt.subplots(4, 1, figsize=(7, 7), sharex=True, height_ratios=[3, 1.3, 1.3, 1])
    axes[0].imshow(spec.reshape(spec.shape[-2], -1), origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1)
    axes[0].set_ylabel("mel band")
    axes[0].set_title(title, fontsize=9)
    melody = features.melody(spec).astype(float)
    melody[melody < 0] = np.nan
    axes[1].plot(frames, melody, ".", label="generated")
    axes[2].plot(frames, features.dynamics(spec), label="generated")
    axes[3].plot(frames, features.onset_strength(spec), label="generated")
    if controls is not None:
        for ax, name, values in ((axes[1], "melody", controls.melody.astype(float)),
                                 (axes[2], "dynamics", controls.dynamics), (axes[3], "rhythm", controls.rhythm)):
            given = controls.masks[name].astype(bool)
            if name == "melody":
                given &= controls.melody >= 0
            if given.any():
                shown = np.where(given, values, np.nan)
                ax.plot(frames, shown, "x" if name == "melody" else "--", color="tab:red", label="control")
    for ax, label in zip(axes[1:], ("pitch class", "dB", "onset"), strict=True):
        ax.set_ylabel(label)
        ax.legend(loc="upper right", fontsize=7)
    axes[-1].set_xlabel("frame (32 ms)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
