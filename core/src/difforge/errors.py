"""Exceptions raised by difforge. Each message is one line that names the culprit."""

from __future__ import annotations


class DifforgeError(Exception):
    """Base class of every error difforge raises on purpose."""


class ConfigError(DifforgeError, ValueError):
    """A configuration file or override is invalid (names the file, key and value)."""


class RegistryError(DifforgeError, KeyError):
    """A name is registered twice, or looked up but unknown."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginError(DifforgeError):
    """A plugin failed to load in strict mode (names the distribution)."""


class DataError(DifforgeError):
    """A training sample cannot be read (names the file)."""


class TrainingError(DifforgeError):
    """Training cannot continue (e.g. a non-finite loss); names the step and last good checkpoint."""


class SamplingError(DifforgeError):
    """Sampling produced non-finite values (names the model and adapters)."""


class CheckpointError(DifforgeError):
    """A checkpoint is missing, incomplete or incompatible."""


class WeightsError(DifforgeError):
    """A weights file cannot be read, is not what it claims to be, or holds NaN/inf (names the file)."""


class UsageError(DifforgeError, ValueError):
    """An argument does not fit what it is given to (e.g. no prompt for a text-conditioned model)."""
