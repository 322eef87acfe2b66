"""DC-Solver (Zhao et al. 2024, "DC-Solver: Improving Predictor-Corrector Diffusion Sampler via
Dynamic Compensation"): UniPC whose reused data prediction is compensated for the
predictor-corrector misalignment.

UniPC evaluates the model at the predicted ``x~_{t_i}`` but goes on from the corrected
``x_{t_i}``, so the data prediction the next steps reuse belongs to a slightly different point.
Dynamic compensation replaces it, before the next predictor, by the Lagrange interpolation of
the last ``K + 1`` data predictions at a shifted time

    x0^dc_i = sum_k x0_{i-k} prod_{l != k} (tau_i - t_{i-l}) / (t_{i-k} - t_{i-l}),
    tau_i = t_{i-1} + rho_i (t_i - t_{i-1}),

with one compensation ratio ``rho_i`` per step (``rho = 1`` is plain UniPC). The ratios are
fitted once per model, step count and guidance scale on a few noises (the paper: 10) by pushing
each step's result toward a finely solved ground-truth trajectory from the same noise
(:func:`fit_dc_ratios`, :func:`search_dc_ratios`). The paper's cascade polynomial regression,
which predicts ratios for unseen step counts and guidance scales, is not implemented: ratios are
searched for each setting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from difforge.plugin_api import SamplingSchedule, UsageError, atomic_save_json, timestep_batch

from .dpm_solver import sample_dpmpp_2m
from .unipc import UniPCStepper, run_unipc

#: the ratio's search interval (the reference implementation bounds it to 1 ± 0.5 with a tanh)
RATIO_BOUNDS = (0.5, 1.5)


def dynamic_compensation(outputs: Sequence[Tensor], times: Sequence[float], ratio: float) -> Tensor:
    """The Lagrange interpolation of ``outputs`` (made at ``times``, the latest last) at
    ``times[-2] + ratio * (times[-1] - times[-2])`` (DC-Solver, Eq. 11)."""
    tau = times[-2] + ratio * (times[-1] - times[-2])
    compensated = torch.zeros_like(outputs[-1])
    for k, (x0, t_k) in enumerate(zip(outputs, times, strict=True)):
        weight = 1.0
        for j, t_j in enumerate(times):
            if j != k:
                weight *= (tau - t_j) / (t_k - t_j)
        compensated = compensated + weight * x0
    return compensated


def _compensate(stepper: UniPCStepper, schedule: SamplingSchedule, dc_order: int, ratio: float) -> None:
    times = [float(schedule.timesteps[p]) for p in stepper.points[-(dc_order + 1):]]
    stepper.outputs[-1] = dynamic_compensation(stepper.outputs[-(dc_order + 1):], times, ratio)


def _ready(stepper: UniPCStepper, dc_order: int) -> bool:
    return len(stepper.outputs) >= dc_order + 1


def sample_dc_solver(
    denoise,
    noise: Tensor,
    schedule: SamplingSchedule,
    *,
    dc_ratios: Sequence[float] | Mapping[str, Sequence[float]] | str | Path | None = None,
    order: int = 2,
    dc_order: int = 2,
    variant: str = "bh2",
    lower_order_final: bool = True,
    generator: torch.Generator | None = None,
    callback=None,
) -> Tensor:
    """DC-Solver, UniPC with dynamic compensation of the reused data prediction (Zhao et al. 2024, Alg. 1).

    ``dc_ratios``: one ratio per step, a mapping of step counts to such lists, or a JSON file of
    that mapping written by :func:`save_dc_ratios` (``--sampler-option dc_ratios=FILE``)."""
    ratios = _ratios_for(dc_ratios, len(schedule))

    def compensate(i: int, x: Tensor, stepper: UniPCStepper, step_order: int) -> None:
        if ratios[i] != 1.0 and _ready(stepper, dc_order):
            _compensate(stepper, schedule, dc_order, ratios[i])

    return run_unipc(denoise, noise, schedule, order=order, variant=variant, lower_order_final=lower_order_final,
                     callback=callback, compensate=compensate, history=dc_order + 1, name="dc_solver")


def _ratios_for(dc_ratios, num_steps: int) -> list[float]:
    source = "dc_ratios"
    if dc_ratios is None:
        raise UsageError("sampler 'dc_solver' needs its compensation ratios (dc_ratios): fit them once per model, "
                         "step count and guidance with difforge_solvers.search_dc_ratios or "
                         "`python -m difforge_solvers.search`, then pass --sampler-option dc_ratios=FILE")
    if isinstance(dc_ratios, str | Path):
        source = str(dc_ratios)
        dc_ratios = load_dc_ratios(dc_ratios)
    if isinstance(dc_ratios, Mapping):
        if str(num_steps) not in dc_ratios:
            raise UsageError(f"{source}: no DC-Solver ratios for {num_steps} steps (it has "
                             f"{', '.join(sorted(dc_ratios, key=int)) or 'none'}); search them for this step count")
        dc_ratios = dc_ratios[str(num_steps)]
    ratios = [float(r) for r in dc_ratios]
    if len(ratios) != num_steps:
        raise UsageError(f"{source}: {len(ratios)} DC-Solver ratios for a {num_steps}-step schedule; "
                         "ratios are searched per step count")
    return ratios


def load_dc_ratios(path: str | Path) -> dict[str, list[float]]:
    """Read a ratios file of :func:`save_dc_ratios`: ``{"ratios": {"<steps>": [ratio, ...]}, ...}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        ratios = data["ratios"]
        return {str(int(steps)): [float(r) for r in values] for steps, values in ratios.items()}
    except FileNotFoundError:
        raise UsageError(f"{path}: no such DC-Solver ratios file") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise UsageError(f"{path}: not a DC-Solver ratios file ({{\"ratios\": {{\"<steps>\": [...]}}}}): "
                         f"{error}") from None


def save_dc_ratios(path: str | Path, ratios: Mapping[int, Sequence[float]], **about) -> Path:
    """Write ``{"ratios": {"<steps>": [...]}, **about}`` atomically (``about``: what they were
    fitted for, e.g. the model and guidance scale)."""
    return atomic_save_json({**about, "ratios": {str(k): [float(r) for r in v] for k, v in ratios.items()}}, path)


def refined_schedule(schedule: SamplingSchedule, alphas_cumprod: Tensor, fine_steps: int = 200) -> SamplingSchedule:
    """A fine schedule through every point of ``schedule``: each of its steps split into equal
    sub-steps of about ``len(alphas_cumprod) / fine_steps`` training timesteps (no sub-step
    much shorter than the others, which would make a multistep solver's difference quotients
    noisy), ending where it ends."""
    stride = max(1, len(alphas_cumprod) // fine_steps)
    coarse = [int(t) for t in schedule.timesteps]
    points = [coarse[0]]
    for start, end in zip(coarse[:-1], coarse[1:], strict=True):
        parts = max(1, round((start - end) / stride))
        points += [round(start + (end - start) * k / parts) for k in range(1, parts + 1)]
    timesteps = torch.tensor(points, dtype=torch.long)
    alphas = alphas_cumprod.float()[timesteps]
    return SamplingSchedule(timesteps=timesteps, alphas=alphas,
                            alphas_prev=torch.cat([alphas[1:], schedule.alphas_prev[-1:].float()]))


@torch.no_grad()
def reference_trajectory(denoise, noise: Tensor, schedule: SamplingSchedule, alphas_cumprod: Tensor,
                         fine_steps: int = 200) -> Tensor:
    """The ground-truth trajectory from ``noise``: ``(len(schedule), *noise.shape)``, row ``k``
    the sample at the point step ``k`` of ``schedule`` reaches (the last row the final sample),
    solved with DPM-Solver++(2M) on :func:`refined_schedule`."""
    fine = refined_schedule(schedule, alphas_cumprod, fine_steps)
    wanted = {int(t): k for k, t in enumerate(schedule.timesteps[1:].tolist())}
    rows: list[Tensor | None] = [None] * len(schedule)

    def record(step: int, t, x: Tensor, x0: Tensor) -> None:
        if step + 1 < len(fine) and int(fine.timesteps[step + 1]) in wanted:
            rows[wanted[int(fine.timesteps[step + 1])]] = x.clone()

    rows[-1] = sample_dpmpp_2m(denoise, noise, fine, callback=record)
    return torch.stack(rows)


def fit_dc_ratios(denoise, noise: Tensor, schedule: SamplingSchedule, reference: Tensor, *, order: int = 2,
                  dc_order: int = 2, variant: str = "bh2", lower_order_final: bool = True,
                  bounds: tuple[float, float] = RATIO_BOUNDS, tolerance: float = 1e-3) -> list[float]:
    """Fit one compensation ratio per step, greedily along the trajectory: at each step, the
    ratio minimising the mean squared distance between that step's corrected result and
    ``reference`` (:func:`reference_trajectory`) over all rows of ``noise`` (the paper's
    objective, Eq. 13; a bounded scalar search instead of its 40 AdamW steps). Steps before
    ``dc_order + 1`` data predictions exist keep ratio 1."""
    from scipy.optimize import minimize_scalar

    if reference.shape != (len(schedule), *noise.shape):
        raise ValueError(f"reference trajectory of shape {tuple(reference.shape)}; expected "
                         f"{(len(schedule), *noise.shape)} (one row per step of the schedule)")
    n = len(schedule)
    ratios: list[float] = []

    def search(i: int, x: Tensor, stepper: UniPCStepper, step_order: int) -> None:
        if not _ready(stepper, dc_order):
            ratios.append(1.0)
            return
        kept = stepper.outputs[-1]

        def loss(ratio: float) -> float:
            stepper.outputs[-1] = kept
            _compensate(stepper, schedule, dc_order, ratio)
            x_next = stepper.predict(x, step_order)
            if i + 1 < n:
                x0_next = denoise(x_next, timestep_batch(schedule.timesteps[i + 1], x_next))
                x_next = stepper.correct(x, x0_next, step_order)
            return torch.mean((x_next.float() - reference[i].float()) ** 2).item()

        best = minimize_scalar(loss, bounds=bounds, method="bounded", options={"xatol": tolerance})
        ratio = float(best.x) if best.fun <= loss(1.0) else 1.0
        stepper.outputs[-1] = kept
        _compensate(stepper, schedule, dc_order, ratio)
        ratios.append(ratio)

    with torch.no_grad():
        run_unipc(denoise, noise, schedule, order=order, variant=variant, lower_order_final=lower_order_final,
                  callback=None, compensate=search, history=dc_order + 1, name="dc_solver")
    return ratios


def search_dc_ratios(backbone, prompts: Sequence[str] | None, num_steps: int, *, guidance_scale: float = 1.0,
                     num_samples: int = 10, seed: int = 0, fine_steps: int = 200, order: int = 2, dc_order: int = 2,
                     variant: str = "bh2") -> list[float]:
    """DC-Solver's ratios for ``backbone`` at ``num_steps`` and ``guidance_scale``, fitted on one
    noise per prompt (or ``num_samples`` noises of an unconditional model) drawn from ``seed``:
    the ground truth is DPM-Solver++(2M) on a ``fine_steps`` grid from the same noise."""
    from difforge.plugin_api import schedule_from_scheduler

    if backbone.conditioning == "text" and not prompts:
        raise UsageError("a text-conditioned model needs calibration prompts to fit DC-Solver ratios")
    batch = len(prompts) if prompts else num_samples
    cond = backbone.encode_prompts(list(prompts)) if prompts else None
    generator = torch.Generator().manual_seed(seed)
    dtype = next(backbone.denoiser.parameters()).dtype
    noise = torch.randn((batch, *backbone.sample_shape()), generator=generator).to(backbone.device, dtype)
    denoise = backbone.guided_denoise(cond, guidance_scale, batch)
    schedule = schedule_from_scheduler(backbone.scheduler, num_steps)
    reference = reference_trajectory(denoise, noise, schedule, backbone.scheduler.alphas_cumprod, fine_steps)
    return fit_dc_ratios(denoise, noise, schedule, reference, order=order, dc_order=dc_order, variant=variant)
