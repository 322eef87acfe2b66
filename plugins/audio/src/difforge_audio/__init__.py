"""difforge-audio: the music world, a log-mel codec, spectrogram diffusion and Music ControlNet."""

__version__ = "0.1.0"
