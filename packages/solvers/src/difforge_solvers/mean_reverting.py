"""Mean-reverting (MR) diffusion (Luo et al. 2023, IR-SDE): the forward SDE drifts towards the
condition ``mu`` (the degraded image) instead of towards zero,

    dx = theta_t (mu - x) dt + g_t dw,   g_t^2 = 2 lambda^2 theta_t,

so its marginal is ``x_t = mu + alpha_t (x_0 - mu) + sigma_t eps`` with ``alpha_t = exp(-int_0^t
theta)`` and ``sigma_t = lambda sqrt(1 - alpha_t^2)``: sampling starts from ``mu + sigma_1 eps``
(the degraded image plus noise) and ends on a restored image. Time runs over ``[0, 1]`` with
``alpha_t^2 = a + (1 - a) cos^2(pi t / 2)`` (the cosine schedule, floored at ``a = alpha_min^2``
so the network's noise prediction can be turned into a data prediction everywhere).

:class:`MeanRevertingDenoiser` wraps a network of any parameterisation (noise, data or velocity
prediction) as the data prediction the samplers of :mod:`difforge_solvers.mrs` take.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

PREDICTIONS = ("epsilon", "sample", "v_prediction")
CONFIG_NAME = "mean_reverting.json"


@dataclass(frozen=True)
class MeanRevertingSchedule:
    """The noise levels of an MR diffusion: stationary std ``scale`` (lambda) and ``alpha_min``,
    the signal left at ``t = 1``; ``prediction`` is what the network it belongs to predicts."""

    scale: float = 0.5
    alpha_min: float = 0.02
    prediction: str = "epsilon"
    #: the network's timestep input is ``t * timestep_scale``
    timestep_scale: float = 1000.0

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction {self.prediction!r} is not one of {', '.join(PREDICTIONS)}")
        if not 0 < self.alpha_min < 1 or self.scale <= 0:
            raise ValueError("an MR schedule needs 0 < alpha_min < 1 and scale > 0")

    def alpha(self, t: Tensor) -> Tensor:
        """``alpha_t = exp(-theta_bar_t)``, the weight left on ``x_0 - mu``."""
        floor = self.alpha_min**2
        return (floor + (1 - floor) * torch.cos(math.pi / 2 * t.double()) ** 2).sqrt()

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma_t = lambda sqrt(1 - alpha_t^2)``, the noise std at ``t``."""
        return self.scale * (1 - self.alpha(t) ** 2).clamp_min(0).sqrt()

    def add_noise(self, x0: Tensor, mean: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``x_t = mu + alpha_t (x_0 - mu) + sigma_t eps`` (``t`` one time per sample)."""
        alpha, sigma = (_per_sample(level, x0) for level in (self.alpha(t), self.sigma(t)))
        return mean + alpha * (x0 - mean) + sigma * noise

    def terminal(self, mean: Tensor, generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
        """A starting point of the reverse process: ``mu + sigma_1 eps``, ``eps`` drawn unless given
        (an optimal boundary condition)."""
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + float(self.sigma(torch.tensor(1.0))) * noise.to(mean)

    def times(self, steps: int) -> Tensor:
        """The ``steps + 1`` times a sampler of ``steps`` steps visits, uniform from 1 to 0 (float64)."""
        if steps < 1:
            raise ValueError(f"an MR sampler needs at least one step, got {steps}")
        return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)

    def data_prediction(self, output: Tensor, x: Tensor, mean: Tensor, t: Tensor) -> Tensor:
        """The network's ``output`` (of :attr:`prediction`) at ``x_t`` as a prediction of ``x_0``."""
        alpha, sigma = (_per_sample(level, x) for level in (self.alpha(t), self.sigma(t)))
        if self.prediction == "sample":
            return output
        if self.prediction == "epsilon":
            return mean + (x - mean - sigma * output) / alpha
        unit = sigma / self.scale  # v on the standardised residual z = (x - mu) / lambda
        return mean + self.scale * (alpha * (x - mean) / self.scale - unit * output)

    def target(self, x0: Tensor, mean: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the network is trained to output for ``x_0``, ``mu`` and ``eps`` at ``t``."""
        if self.prediction == "sample":
            return x0
        if self.prediction == "epsilon":
            return noise
        alpha, unit = _per_sample(self.alpha(t), x0), _per_sample(self.sigma(t), x0) / self.scale
        return alpha * noise - unit * (x0 - mean) / self.scale

    def save(self, directory: str | Path) -> Path:
        """Write the schedule as ``mean_reverting.json`` in ``directory``."""
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> MeanRevertingSchedule:
        """The schedule saved in ``directory``; one line naming the file if it is missing or wrong."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no mean-reverting schedule (not an MR diffusion model)")
        try:
            return cls(**json.loads(path.read_text()))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None


class MeanRevertingDenoiser:
    """A conditional MR network as the data prediction ``denoise(x, t) -> x0`` of the samplers:
    the network sees ``x_t`` and the condition ``mu`` stacked on channels, and the time as
    ``t * timestep_scale``."""

    def __init__(self, network, schedule: MeanRevertingSchedule, mean: Tensor) -> None:
        self.network, self.schedule, self.mean = network, schedule, mean

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        timesteps = t.to(x.dtype) * self.schedule.timestep_scale
        output = self.network(torch.cat([x, self.mean], dim=1), timesteps).sample
        return self.schedule.data_prediction(output, x, self.mean, t).to(x.dtype)


def _per_sample(level: Tensor, like: Tensor) -> Tensor:
    """A level of shape ``()`` or ``(batch,)`` broadcast over ``like``'s other dimensions."""
    level = level.to(dtype=like.dtype, device=like.device)
    return level.reshape(-1, *([1] * (like.ndim - 1))) if level.ndim else level


def load_mean_reverting(directory: str | Path):
    """The network (``unet/``, safetensors) and schedule (``mean_reverting.json``) of an MR
    diffusion model directory, such as the zoo's shapes-sr-mr; the network in eval mode."""
    from diffusers import UNet2DModel

    schedule = MeanRevertingSchedule.from_pretrained(directory)
    network = UNet2DModel.from_pretrained(Path(directory) / "unet", use_safetensors=True, local_files_only=True)
    return network.eval(), schedule
