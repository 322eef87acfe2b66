"""What the denoiser predicts, and how noisy samples and training targets are formed.

Discrete variance-preserving (VP) parameterisations use the scheduler's ``alphas_cumprod``
(``x_t = sqrt(a) x0 + sqrt(1 - a) eps``); flow matching / rectified flow uses straight paths
``x_t = (1 - t) x0 + t eps`` with continuous ``t`` in (0, 1) and predicts ``v = eps - x0``.
Every parameterisation converts a model output back to an ``x0`` estimate, which is what the
samplers consume, and knows the factor that maps its loss to an ``x0`` loss (used by min-SNR).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


def _expand(values: Tensor, like: Tensor) -> Tensor:
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1))).to(like.dtype)


class Parameterization(ABC):
    """Base class: noising, target, x0 recovery and SNR for one prediction type."""

    #: registry name, and the diffusers scheduler ``prediction_type`` it corresponds to
    name: str = ""
    prediction_type: str = ""
    continuous: bool = False

    def __init__(self, scheduler) -> None:
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)

    @abstractmethod
    def sample_timesteps(self, batch: int, generator: torch.Generator | None, device) -> Tensor:
        """Training timesteps for a batch (ints for VP, floats in (0, 1) for flow)."""

    @abstractmethod
    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """The noisy sample ``x_t``."""

    @abstractmethod
    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the model is trained to output."""

    @abstractmethod
    def to_x0(self, output: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The ``x0`` estimate implied by a model output."""

    @abstractmethod
    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio at ``t``."""

    @abstractmethod
    def x0_loss_factor(self, t: Tensor) -> Tensor:
        """``f`` such that ``|x0 - x0_hat|^2 = f * |target - output|^2``."""

    def model_timestep(self, t: Tensor) -> Tensor:
        """The timestep value fed to the denoiser."""
        return t

    def from_model_timestep(self, timestep: Tensor) -> Tensor:
        """Inverse of :meth:`model_timestep` (scheduler timesteps -> this parameterisation's t)."""
        return timestep

    def loss_weight(self, t: Tensor, weighting: str, snr_gamma: float) -> Tensor:
        """Per-sample loss weights: ``uniform`` or ``min_snr`` (Hang et al. 2023, min(SNR, γ) in x0 space)."""
        if weighting == "uniform":
            return torch.ones_like(t, dtype=torch.float32)
        if weighting == "min_snr":
            snr = self.snr(t).float()
            return torch.clamp(snr, max=snr_gamma) * self.x0_loss_factor(t).float()
        raise ValueError(f"unknown loss weighting {weighting!r}; known: uniform, min_snr")


class _VariancePreserving(Parameterization):
    def __init__(self, scheduler) -> None:
        super().__init__(scheduler)
        if not hasattr(scheduler, "alphas_cumprod"):
            raise ValueError(
                f"parameterisation {self.name!r} needs a scheduler with alphas_cumprod "
                f"(DDPM/DDIM/Euler...), got {type(scheduler).__name__}"
            )
        self.alphas_cumprod = scheduler.alphas_cumprod.detach().clone().float()

    def _alpha(self, t: Tensor, like: Tensor) -> Tensor:
        return _expand(self.alphas_cumprod.to(t.device)[t.long()], like)

    def sample_timesteps(self, batch, generator, device) -> Tensor:
        return torch.randint(0, self.num_train_timesteps, (batch,), generator=generator).to(device)

    def add_noise(self, x0, noise, t):
        a = self._alpha(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def snr(self, t):
        a = self.alphas_cumprod.to(t.device)[t.long()]
        return a / (1 - a)


class Epsilon(_VariancePreserving):
    """Predict the added noise (DDPM, Ho et al. 2020)."""

    name, prediction_type = "epsilon", "epsilon"

    def target(self, x0, noise, t):
        return noise

    def to_x0(self, output, x_t, t):
        a = self._alpha(t, x_t)
        return (x_t - (1 - a).sqrt() * output) / a.sqrt()

    def x0_loss_factor(self, t):
        return 1.0 / self.snr(t)


class VPrediction(_VariancePreserving):
    """Predict ``v = sqrt(a) eps - sqrt(1 - a) x0`` (Salimans & Ho 2022)."""

    name, prediction_type = "v", "v_prediction"

    def target(self, x0, noise, t):
        a = self._alpha(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def to_x0(self, output, x_t, t):
        a = self._alpha(t, x_t)
        return a.sqrt() * x_t - (1 - a).sqrt() * output

    def x0_loss_factor(self, t):
        return 1.0 / (self.snr(t) + 1.0)


class X0(_VariancePreserving):
    """Predict the clean sample directly."""

    name, prediction_type = "x0", "sample"

    def target(self, x0, noise, t):
        return x0

    def to_x0(self, output, x_t, t):
        return output

    def x0_loss_factor(self, t):
        return torch.ones_like(t, dtype=torch.float32)


class FlowMatching(Parameterization):
    """Rectified flow / flow matching: straight paths, predict the velocity ``eps - x0``
    (Lipman et al. 2023; Liu et al. 2023). ``t`` is continuous; timestep shift as in SD3."""

    name, prediction_type, continuous = "flow", "flow", True

    def __init__(self, scheduler, timestep_sampling: str = "uniform") -> None:
        super().__init__(scheduler)
        if not hasattr(scheduler, "sigmas") or hasattr(scheduler, "alphas_cumprod"):
            raise ValueError(
                "parameterisation 'flow' needs a flow-matching scheduler "
                f"(e.g. FlowMatchEulerDiscreteScheduler), got {type(scheduler).__name__}"
            )
        self.shift = float(getattr(scheduler.config, "shift", 1.0) or 1.0)
        if timestep_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"unknown timestep_sampling {timestep_sampling!r}")
        self.timestep_sampling = timestep_sampling

    def sample_timesteps(self, batch, generator, device):
        if self.timestep_sampling == "logit_normal":
            t = torch.sigmoid(torch.randn((batch,), generator=generator))
        else:
            t = torch.rand((batch,), generator=generator)
        t = t.clamp(1e-4, 1.0)
        t = self.shift * t / (1 + (self.shift - 1) * t)
        return t.to(device)

    def add_noise(self, x0, noise, t):
        s = _expand(t, x0)
        return (1 - s) * x0 + s * noise

    def target(self, x0, noise, t):
        return noise - x0

    def to_x0(self, output, x_t, t):
        return x_t - _expand(t, x_t) * output

    def snr(self, t):
        return ((1 - t) / t.clamp_min(1e-8)) ** 2

    def x0_loss_factor(self, t):
        return t.float() ** 2

    def model_timestep(self, t):
        return t * self.num_train_timesteps

    def from_model_timestep(self, timestep):
        return timestep.float() / self.num_train_timesteps


#: diffusers ``prediction_type`` -> difforge parameterisation name
FROM_PREDICTION_TYPE = {"epsilon": "epsilon", "v_prediction": "v", "sample": "x0", "flow": "flow"}

__all__ = [
    "Parameterization",
    "Epsilon",
    "VPrediction",
    "X0",
    "FlowMatching",
    "FROM_PREDICTION_TYPE",
]
