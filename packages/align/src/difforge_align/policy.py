"""The denoising chain as a policy: DDIM steps with Gaussian log-probabilities.

With ``eta > 0`` each DDIM step samples ``x_{t-1} ~ N(μ_θ(x_t, t), σ_t² I)``, so a sampling
run is a trajectory of an MDP whose actions have tractable likelihoods (DDPO, Black et al.
2023, §4.3). :func:`sample_trajectories` records one; :func:`step_log_prob` re-scores one of
its steps under the current parameters (with gradients) for the policy-gradient update.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from difforge.plugin_api import SamplingSchedule, schedule_from_scheduler

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _gaussian_log_prob(x_prev: Tensor, mean: Tensor, sigma: Tensor) -> Tensor:
    """log N(x_prev; mean, σ² I), mean over dimensions as in DDPO's code; x_prev is data (no gradient)."""
    sigma = sigma.clamp_min(1e-12)
    log_prob = -((x_prev.detach() - mean) ** 2) / (2 * sigma**2) - sigma.log() - _LOG_SQRT_2PI
    return log_prob.flatten(1).mean(1)


def ddim_step(x0: Tensor, x: Tensor, alpha: Tensor, alpha_prev: Tensor, eta: float,
              generator: torch.Generator | None = None, x_prev: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One stochastic DDIM step and its log-probability, mean over dimensions (Song et al. 2021, Eq. 12; DDPO Eq. 4)."""
    eps = (x - alpha.sqrt() * x0) / (1 - alpha).sqrt()
    sigma = eta * ((1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)).clamp_min(0).sqrt()
    mean = alpha_prev.sqrt() * x0 + (1 - alpha_prev - sigma**2).clamp_min(0).sqrt() * eps
    if x_prev is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        x_prev = mean + sigma * noise
    return x_prev, _gaussian_log_prob(x_prev, mean, sigma)


def consistency_step(x0: Tensor, alpha_prev: Tensor, generator: torch.Generator | None = None,
                     x_prev: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One multistep-consistency sampling step, ``x_{t'} ~ N(√ᾱ' f_θ(x_t), (1 − ᾱ') I)``, and its
    log-probability (Song et al. 2023, Alg. 1; RLCM, Oertell et al. 2024)."""
    mean = alpha_prev.sqrt() * x0
    sigma = (1 - alpha_prev).clamp_min(0).sqrt()
    if x_prev is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device="cpu").to(x0.device)
        x_prev = mean + sigma * noise
    return x_prev, _gaussian_log_prob(x_prev, mean, sigma)


POLICIES = ("ddim", "consistency")


def policy_step(policy: str, x0: Tensor, x: Tensor, alpha: Tensor, alpha_prev: Tensor, eta: float,
                generator: torch.Generator | None = None, x_prev: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """A step of the named policy (``ddim`` or ``consistency``) and its log-probability."""
    if policy == "ddim":
        return ddim_step(x0, x, alpha, alpha_prev, eta, generator, x_prev)
    if policy == "consistency":
        return consistency_step(x0, alpha_prev, generator, x_prev)
    raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")


@dataclass
class Trajectories:
    """Sampled denoising chains: ``latents[i]`` is the state before step ``i`` (``latents[-1]``
    the final sample), ``log_probs[i]`` the log-probability of step ``i`` when sampled."""

    prompts: list[str]
    cond: Tensor
    null: Tensor | None
    latents: Tensor  # (steps + 1, N, ...)
    log_probs: Tensor  # (steps, N)
    schedule: SamplingSchedule
    eta: float
    guidance_scale: float
    policy: str = "ddim"

    @property
    def num_steps(self) -> int:
        return len(self.schedule)

    def stochastic_steps(self) -> list[int]:
        """The steps that sampled noise. The final step to ᾱ = 1 is deterministic for both
        policies (σ = 0): its likelihood is a point mass whose gradient would be 0/0, so it is
        not trained (DDPO's SD schedule ends at ᾱ_0 < 1 instead, with a tiny σ)."""
        return [i for i in range(self.num_steps) if float(self.schedule.alphas_prev[i]) < 1.0 - 1e-6]


def round_minibatches(count: int, size: int | None, epochs: int, steps: list[int], fraction: float,
                      generator: torch.Generator) -> list[tuple[Tensor, list[int]]]:
    """The optimizer steps of one sampling round: for each of ``epochs`` passes, a fresh
    permutation of the ``count`` items cut into minibatches of ``size`` (default: all), each
    trained on a random ``fraction`` of the trainable ``steps`` (DDPO's timestep fraction)."""
    rng = random.Random(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    per_item = max(1, round(fraction * len(steps)))
    size = size or count
    queue = []
    for _ in range(epochs):
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, size):
            queue.append((order[start : start + size], sorted(rng.sample(steps, per_item))))
    return queue


def guided_x0(backbone, model: nn.Module, x: Tensor, timestep: Tensor, cond: Any, null: Any, scale: float) -> Tensor:
    """The guided x0 estimate of ``model`` (which may be the trained, wrapped copy): classifier-free
    guidance, or the scale as input for a guidance-embedding model (an LCM)."""
    return backbone.guided_denoise(cond, scale, len(x), uncond=null, denoiser=model)(x, timestep)


@torch.no_grad()
def sample_trajectories(backbone, model: nn.Module, prompts: list[str], *, num_steps: int, eta: float,
                        guidance_scale: float, generator: torch.Generator, policy: str = "ddim",
                        initial: Tensor | None = None) -> Trajectories:
    """Sample one trajectory per prompt with the ``policy`` step (stochastic DDIM or multistep
    consistency), recording every state and log-prob; ``initial`` gives the starting noise
    (default: drawn from ``generator``)."""
    if backbone.parameterization.continuous or not hasattr(backbone.scheduler, "alphas_cumprod"):
        raise ValueError("policy-gradient sampling needs a variance-preserving (DDPM/DDIM) scheduler")
    cond = backbone.encode_prompts(prompts)
    null = backbone.null_condition(len(prompts)) if guidance_scale != 1.0 and not backbone.embeds_guidance else None
    schedule = schedule_from_scheduler(backbone.scheduler, num_steps)
    shape = (len(prompts), *backbone.sample_shape())
    if initial is not None and tuple(initial.shape) != shape:
        raise ValueError(f"sample_trajectories: initial noise has shape {tuple(initial.shape)}, expected {shape}")
    x = (torch.randn(shape, generator=generator) if initial is None else initial).to(backbone.device)
    latents, log_probs = [x], []
    for i, t in enumerate(schedule.timesteps):
        timestep = t.reshape(1).expand(len(prompts)).to(x.device)
        x0 = guided_x0(backbone, model, x, timestep, cond, null, guidance_scale)
        alpha, alpha_prev = schedule.alphas[i].to(x), schedule.alphas_prev[i].to(x)
        x, log_prob = policy_step(policy, x0, x, alpha, alpha_prev, eta, generator)
        latents.append(x)
        log_probs.append(log_prob)
    return Trajectories(list(prompts), cond, null, torch.stack(latents), torch.stack(log_probs), schedule, eta,
                        guidance_scale, policy)


def step_log_prob(backbone, model: nn.Module, traj: Trajectories, step: int, index: Tensor,
                  cond: Any = None, null: Any = None) -> Tensor:
    """The log-probability, under ``model`` now, of step ``step`` of trajectories ``index``;
    ``cond``/``null`` replace the conditioning recorded when sampling (e.g. re-encoded prompts)."""
    x, x_prev = traj.latents[step, index], traj.latents[step + 1, index]
    timestep = traj.schedule.timesteps[step].reshape(1).expand(len(index)).to(x.device)
    cond = traj.cond[index] if cond is None else cond
    if null is None and traj.null is not None:
        null = traj.null[index]
    x0 = guided_x0(backbone, model, x, timestep, cond, null, traj.guidance_scale)
    a, a_prev = traj.schedule.alphas[step].to(x), traj.schedule.alphas_prev[step].to(x)
    return policy_step(traj.policy, x0, x, a, a_prev, traj.eta, x_prev=x_prev)[1]


_SCHEDULE_FIELDS = ("timesteps", "alphas", "alphas_prev", "sigmas")


def round_state(traj: Trajectories, queue: list[tuple[Tensor, list[int]]],
                tensors: dict[str, Tensor]) -> dict[str, Any]:
    """A sampling round as checkpoint state (see :meth:`Objective.state_dict`): the recorded
    trajectories, the round's own ``tensors`` (advantages, winners, ...) and the minibatches
    still queued, so that a resumed run finishes the round instead of sampling a new one."""
    if not isinstance(traj.cond, Tensor) or not (traj.null is None or isinstance(traj.null, Tensor)):
        raise TypeError(f"round_state: conditioning of type {type(traj.cond).__name__} cannot be checkpointed")
    state: dict[str, Any] = {"round.prompts": list(traj.prompts), "round.eta": traj.eta, "round.policy": traj.policy,
                             "round.guidance_scale": traj.guidance_scale, "round.cond": traj.cond,
                             "round.latents": traj.latents, "round.log_probs": traj.log_probs,
                             "round.queue_steps": [list(steps) for _, steps in queue]}
    if traj.null is not None:
        state["round.null"] = traj.null
    state.update({f"round.schedule.{f}": getattr(traj.schedule, f) for f in _SCHEDULE_FIELDS
                  if getattr(traj.schedule, f) is not None})
    state.update({f"round.queue.{i}": index for i, (index, _) in enumerate(queue)})
    state.update({f"round.{name}": value for name, value in tensors.items()})
    return state


def round_from_state(state: dict[str, Any], names: list[str], device: torch.device | str
                     ) -> tuple[Trajectories, list[tuple[Tensor, list[int]]], dict[str, Tensor]] | None:
    """Inverse of :func:`round_state` (``None`` when no round was saved); the trajectories go
    to ``device``, the ``names`` tensors and the queued indices stay on the CPU."""
    if "round.latents" not in state:
        return None
    schedule = SamplingSchedule(**{f: state[f"round.schedule.{f}"] for f in _SCHEDULE_FIELDS
                                   if f"round.schedule.{f}" in state})
    null = state.get("round.null")
    traj = Trajectories(list(state["round.prompts"]), state["round.cond"].to(device),
                        None if null is None else null.to(device), state["round.latents"].to(device),
                        state["round.log_probs"].to(device), schedule, float(state["round.eta"]),
                        float(state["round.guidance_scale"]), str(state["round.policy"]))
    queue = [(state[f"round.queue.{i}"], [int(s) for s in steps]) for i, steps in enumerate(state["round.queue_steps"])]
    return traj, queue, {name: state[f"round.{name}"] for name in names}
