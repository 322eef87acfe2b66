"""The music world's reward, read off by the analytic music scorer."""

from __future__ import annotations

import torch

from difforge.plugin_api import Reward


class MusicCaptionAdherence(Reward):
    """Share of a caption's tempo, register order and dynamics that a generated spectrogram
    (1 channel, log-mel in [-1, 1]) shows, read by the analytic music scorer. Not differentiable."""

    name = "music-caption-adherence"
    needs_prompts = True

    def check(self, images, prompts) -> None:
        super().check(images, prompts)
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"reward {self.name!r}: expected 1-channel spectrograms (N, 1, mels, frames), "
                             f"got {tuple(images.shape)}")

    def example_inputs(self):
        """Two clips of the music world and their captions."""
        from .codec import MelCodec
        from .music import random_clip

        clips = [random_clip(seed) for seed in (0, 1)]
        return torch.stack([torch.from_numpy(MelCodec().encode(c.audio)) for c in clips]), [c.caption for c in clips]

    def score(self, images, prompts=None):
        from .scorer import caption_adherence

        return torch.tensor([caption_adherence(s, p)["reward"] for s, p in zip(images, prompts, strict=True)])
