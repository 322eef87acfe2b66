"""Registers the audio plugin with difforge: datasets, a reward, the embedded models and CLI
sub-commands. Only difforge's public plugin API is used."""

from __future__ import annotations

import torch

from difforge import hookimpl
from difforge.rewards import Reward


class MusicCaptionAdherence(Reward):
    """Share of a caption's tempo, register order and dynamics that a generated spectrogram
    (1 channel, log-mel in [-1, 1]) shows, read by the analytic music scorer. Not differentiable."""

    name = "music-caption-adherence"
    needs_prompts = True

    def check(self, images, prompts) -> None:
        super().check(images, prompts)
        if images.shape[1] != 1:
            raise ValueError(f"reward {self.name!r}: expected 1-channel spectrograms, got {images.shape[1]} channels")

    def example_inputs(self):
        """Two clips of the music world and their captions."""
        from .codec import MelCodec
        from .music import random_clip

        clips = [random_clip(seed) for seed in (0, 1)]
        return torch.stack([torch.from_numpy(MelCodec().encode(c.audio)) for c in clips]), [c.caption for c in clips]

    def score(self, images, prompts=None):
        from .scorer import caption_adherence

        return torch.tensor([caption_adherence(s, p)["reward"] for s, p in zip(images, prompts, strict=True)])


@hookimpl
def difforge_register_datasets():
    from .data import AudioPreferencePairsDataset, MusicClipsDataset

    return {"music-clips": MusicClipsDataset, "audio-preference-pairs": AudioPreferencePairsDataset}


@hookimpl
def difforge_register_rewards():
    return {"music-caption-adherence": MusicCaptionAdherence()}


@hookimpl
def difforge_resolve_model(reference):
    from .models import MODELS_DIR

    path = MODELS_DIR / reference
    return str(path) if reference == "music-sd-tiny" and (path / "difforge_backbone.json").exists() else None


@hookimpl
def difforge_register_commands():
    from difforge.cli import Command

    from . import cli

    return {
        "audio-generate": Command("generate music-world clips (.wav + spectrogram/control plot), optionally "
                                  "under Music ControlNet controls taken from a .wav", cli.configure_generate,
                                  cli.run_generate),
        "audio-preferences": Command("build Tango 2 style preference pairs (clips from prompts with misordered / "
                                     "missing events)", cli.configure_preferences, cli.run_preferences),
    }
