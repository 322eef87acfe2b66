"""Latent consistency distillation (LCM, Luo et al. 2023): a few-step student distilled from a
frozen diffusion teacher, with the classifier-free guidance scale as one of its inputs.

Each step draws a timestep ``t_{n+k}`` of the teacher's ``num_ddim_timesteps``-step DDIM grid
(the skipping step ``k = T / num_ddim_timesteps``), a guidance scale ``ω ~ U(guidance_scale_range)``
and noises the latent to ``t_{n+k}``; one DDIM step of the ω-guided teacher brings it to
``t_n = t_{n+k} - k``. The consistency function ``f(x, t, ω, c) = c_skip(t) x + c_out(t) x̂0(x, t, ω, c)``
of the student at ``(z_{t_{n+k}}, t_{n+k})`` is pulled to that of the target network θ⁻ (an EMA of
the student) at ``(ẑ_{t_n}, t_n)`` under a pseudo-Huber distance (LCM's Algorithm 1, as diffusers'
``train_lcm_distill_sd_wds.py`` implements it: the grid, ``c_skip``/``c_out`` with σ_data = 0.5 and
timestep scaling 10, w = ω − 1 embedded). The student is the teacher with a guidance-scale
embedding added to its timestep embedding (diffusers' ``time_cond_proj_dim``; the projection
starts at zero, so the student starts as the teacher). It is saved with diffusers'
``LCMScheduler`` and samples with the ``consistency`` sampler in 1–8 steps, the guidance scale
as its input (one model call per step).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from difforge.plugin_api import ConfigError, Objective, TrainingError, batch_samples, guidance_scale_embedding

#: σ_data of the boundary condition (LCM, after consistency models)
SIGMA_DATA = 0.5


class LCMOptions(BaseModel):
    """Options of the ``lcm`` objective."""

    model_config = ConfigDict(extra="forbid")

    num_ddim_timesteps: int = Field(50, ge=2, description="steps of the teacher's DDIM grid (the skipping step is "
                                                          "num_train_timesteps / this)")
    guidance_scale_range: tuple[float, float] = Field(
        (2.0, 7.0), description="ω is drawn uniformly from this range of classifier-free guidance scales")
    guidance_embedding_dim: int = Field(256, ge=0, description="width of the ω embedding added to the timestep "
                                                               "embedding (0: none, one model for the whole range)")
    target_ema: float = Field(0.95, ge=0, lt=1, description="EMA decay of the target network (0: the student "
                                                            "itself under stop-gradient)")
    loss: Literal["huber", "l2"] = "huber"
    huber_c: float = Field(0.001, gt=0, description="the pseudo-Huber distance's c")
    timestep_scaling: float = Field(10.0, gt=0, description="timestep scaling of c_skip / c_out (LCMScheduler's)")

    @model_validator(mode="after")
    def _range(self) -> LCMOptions:
        low, high = self.guidance_scale_range
        if not 1.0 <= low <= high:
            raise ValueError(f"guidance_scale_range must satisfy 1 <= low <= high, got {self.guidance_scale_range}")
        return self


def with_guidance_embedding(denoiser: nn.Module, dim: int) -> nn.Module:
    """A copy of ``denoiser`` whose timestep embedding also takes a guidance-scale embedding of
    width ``dim`` (diffusers' ``time_cond_proj_dim``), its new projection zero so that it
    computes exactly what ``denoiser`` computes."""
    if "time_cond_proj_dim" not in denoiser.config:
        raise ConfigError(f"objective lcm: {type(denoiser).__name__} takes no guidance embedding "
                          "(no time_cond_proj_dim in its config); set objective.options.guidance_embedding_dim: 0")
    parameter = next(denoiser.parameters())
    student = type(denoiser).from_config(denoiser.config, time_cond_proj_dim=dim)
    missing, unexpected = student.load_state_dict(denoiser.state_dict(), strict=False)
    if unexpected or set(missing) != {"time_embedding.cond_proj.weight"}:
        raise TrainingError(f"objective lcm: the student does not take the teacher's weights "
                            f"(missing {missing}, unexpected {unexpected})")
    nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student.to(parameter.device, parameter.dtype)


class LCMObjective(Objective):
    """Latent consistency distillation of the run's model (the teacher) into a few-step,
    guidance-embedding student (see the module docstring)."""

    name = "lcm"
    requires = frozenset({"images", "captions"})
    options_model = LCMOptions

    def __init__(self, backbone, **options: Any) -> None:
        """Keep a frozen copy of the model as the teacher and make the model the student."""
        from diffusers import LCMScheduler

        super().__init__(backbone, **options)
        o = self.options
        scheduler = backbone.scheduler
        if backbone.parameterization.continuous or not hasattr(scheduler, "alphas_cumprod"):
            raise ConfigError("objective lcm: the teacher must be a variance-preserving (DDPM-family) model")
        if backbone.conditioning != "text":
            raise ConfigError(f"objective lcm: distils a text-conditioned model with classifier-free guidance; "
                              f"this one is conditioned on {backbone.conditioning}")
        if backbone.embeds_guidance:
            raise ConfigError("objective lcm: model.pretrained already takes the guidance scale as an input; "
                              "distil from a model sampled with classifier-free guidance")
        steps = scheduler.config.num_train_timesteps
        if steps % o.num_ddim_timesteps:
            raise ConfigError(f"objective.options.num_ddim_timesteps: {o.num_ddim_timesteps} does not divide the "
                              f"teacher's {steps} training timesteps")
        self.skip = steps // o.num_ddim_timesteps
        self.teacher = copy.deepcopy(backbone.denoiser).requires_grad_(False).eval()
        if o.guidance_embedding_dim:
            backbone.replace_denoiser(with_guidance_embedding(backbone.denoiser, o.guidance_embedding_dim))
        accepted = inspect.signature(LCMScheduler.__init__).parameters  # the teacher's DDPM keys LCM has too
        backbone.scheduler = LCMScheduler.from_config(
            {k: v for k, v in scheduler.config.items() if k in accepted},
            original_inference_steps=o.num_ddim_timesteps, timestep_scaling=o.timestep_scaling)
        self.target: nn.Module | None = None
        self.target_step = 0

    def trainable_modules(self, config) -> dict[str, nn.Module]:
        """The student (the whole denoiser, or an adapter on it when no guidance embedding is learned)."""
        if config.adapter is not None and self.options.guidance_embedding_dim:
            raise ConfigError("objective lcm: an adapter cannot train the guidance embedding; set "
                              "objective.options.guidance_embedding_dim: 0 (as LCM-LoRA) or remove the adapter")
        return super().trainable_modules(config)

    def setup(self, context) -> None:
        """Place the teacher, make the target network, and read the DDIM grid."""
        device = self.backbone.device
        self.context = context
        self.teacher.to(device)
        if self.options.target_ema > 0:
            self.target = copy.deepcopy(self.backbone.denoiser).requires_grad_(False).eval()
        self.target_step = context.step
        self.grid = torch.arange(1, self.options.num_ddim_timesteps + 1) * self.skip - 1
        self.alphas = self.backbone.scheduler.alphas_cumprod.float()

    def state_dict(self) -> dict[str, Any]:
        """The target network's weights and the step it was last updated at."""
        state: dict[str, Any] = {"target_step": self.target_step}
        if self.target is not None:
            state |= {f"target.{name}": p.detach().clone() for name, p in self.target.named_parameters()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (after :meth:`setup`)."""
        self.target_step = int(state["target_step"])
        if self.target is not None:
            with torch.no_grad():
                for name, p in self.target.named_parameters():
                    p.copy_(state[f"target.{name}"])

    @torch.no_grad()
    def update_target(self) -> None:
        """θ⁻ ← μ θ⁻ + (1 − μ) θ once per optimizer step (at the first batch after it)."""
        step = self.context.step
        if self.target is None or step == self.target_step:
            return
        for target, student in zip(self.target.parameters(), self.backbone.denoiser.parameters(), strict=True):
            target.lerp_(student.detach(), 1.0 - self.options.target_ema)
        self.target_step = step

    def boundary(self, timestep: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """``c_skip(t)``, ``c_out(t)``: 1 and 0 at t = 0, so ``f(x, 0) = x``."""
        scaled = (self.options.timestep_scaling * timestep.float()).view(-1, *[1] * (like.dim() - 1))
        c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
        c_out = scaled / (scaled**2 + SIGMA_DATA**2).sqrt()
        return c_skip.to(like), c_out.to(like)

    def consistency(self, model: nn.Module, x: Tensor, timestep: Tensor, cond: Tensor,
                    inputs: dict[str, Tensor]) -> Tensor:
        """``f(x, t) = c_skip(t) x + c_out(t) x̂0(x, t)`` of ``model``."""
        c_skip, c_out = self.boundary(timestep, x)
        return c_skip * x + c_out * self.backbone.denoise_x0(x, timestep, cond, extra=inputs, denoiser=model)

    def loss(self, batch: dict[str, Any], denoiser: nn.Module, generator: torch.Generator):
        self.update_target()
        bb, o = self.backbone, self.options
        device = bb.device
        x0 = bb.encode_images(batch_samples(batch).to(device), generator=generator)
        n = x0.shape[0]
        cond, uncond = bb.encode_prompts(list(batch["caption"])), bb.null_condition(n)
        start = self.grid[torch.randint(0, len(self.grid), (n,), generator=generator)]
        end = (start - self.skip).clamp(min=0)
        low, high = o.guidance_scale_range
        scale = low + (high - low) * torch.rand(n, generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0)
        shape = (n, *[1] * (x0.dim() - 1))
        a_start, a_end = self.alphas[start].view(shape).to(x0), self.alphas[end].view(shape).to(x0)
        x_start = a_start.sqrt() * x0 + (1 - a_start).sqrt() * noise
        start, end = start.to(device), end.to(device)
        inputs = ({"timestep_cond": guidance_scale_embedding(scale - 1, o.guidance_embedding_dim).to(x0)}
                  if o.guidance_embedding_dim else {})
        prediction = self.consistency(denoiser, x_start, start, cond, inputs)
        with torch.no_grad():
            both = bb.denoise_x0(torch.cat([x_start, x_start]), torch.cat([start, start]),
                                 torch.cat([uncond, cond]), denoiser=self.teacher)
            x0_uncond, x0_cond = both.chunk(2)
            x0_guided = x0_uncond + scale.view(shape).to(x0) * (x0_cond - x0_uncond)
            eps_guided = (x_start - a_start.sqrt() * x0_guided) / (1 - a_start).sqrt()
            x_end = a_end.sqrt() * x0_guided + (1 - a_end).sqrt() * eps_guided  # the teacher's DDIM step
            target_model = self.target if self.target is not None else bb.denoiser
            target = self.consistency(target_model, x_end, end, cond, inputs)
        difference = prediction.float() - target.float()
        if o.loss == "huber":
            distance = (difference**2 + o.huber_c**2).sqrt() - o.huber_c
        else:
            distance = difference**2
        loss = distance.mean()
        return loss, {"loss": loss.detach()}
