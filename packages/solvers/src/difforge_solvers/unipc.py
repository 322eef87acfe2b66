"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models", Algorithms 1-2, data prediction, the ``B(h)`` variants bh1 / bh2).

Each step is the predictor UniP-p from ``x_{t_{i-1}}`` to ``x~_{t_i}``, then, once the model has
been evaluated at ``x~_{t_i}``, the corrector UniC raises the order by one using that new
evaluation, at no extra cost:

    x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) x_{t_{i-1}} - alpha_{t_i} h phi_1(h) x0_{i-1}
              - alpha_{t_i} B(h) sum_m a_m D_m / r_m,

with ``D_m`` the differences of earlier data predictions and ``a`` solving ``R a = b(h)``. The
corrected sample goes on, but the evaluation reused at the next step was made at the
uncorrected one: the misalignment DC-Solver compensates (:mod:`difforge_solvers.dc_solver`).
With the first step first order, the last step's order lowered under ``lower_order_final`` and
no correction after the last step, it takes the steps diffusers' ``UniPCMultistepScheduler``
takes, so both give the same samples on one schedule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from difforge.plugin_api import SamplingSchedule, timestep_batch

from .noise_levels import NoiseLevels, after_step, scalar

VARIANTS = ("bh1", "bh2")


class UniPCStepper:
    """The predictor and corrector over a schedule's noise levels, with the data predictions
    made so far (``outputs``, the latest last; :mod:`~difforge_solvers.dc_solver` replaces the
    latest one by its compensated value)."""

    def __init__(self, levels: NoiseLevels, *, order: int, variant: str, history: int):
        if variant not in VARIANTS:
            raise ValueError(f"UniPC variant {variant!r}: expected one of {', '.join(VARIANTS)}")
        if order < 1:
            raise ValueError(f"UniPC order must be at least 1, got {order}")
        self.levels, self.order, self.variant, self.history = levels, order, variant, max(history, order)
        self.outputs: list[Tensor] = []
        self.points: list[int] = []

    def remember(self, point: int, x0: Tensor) -> None:
        """Keep the data prediction made at grid point ``point``."""
        self.outputs, self.points = [*self.outputs, x0][-self.history:], [*self.points, point][-self.history:]

    def _coefficients(self, source: int, target: int, order: int, previous: list[int]):
        lam = self.levels.lam
        h = lam[target] - lam[source]
        hh = -h
        h_phi_1 = torch.expm1(hh)
        b_h = hh if self.variant == "bh1" else torch.expm1(hh)
        ratios = [(lam[p] - lam[source]) / h for p in previous] + [torch.ones((), dtype=torch.float64)]
        rks = torch.stack(ratios)
        rows, b, h_phi_k, factorial = [], [], h_phi_1 / hh - 1, 1
        for k in range(1, order + 1):
            rows.append(rks ** (k - 1))
            b.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        return h_phi_1, b_h, rks[:-1], torch.stack(rows), torch.stack(b)

    def _step(self, x: Tensor, order: int):
        """The step from the latest output's point ``s`` to ``s + 1``: its exponential-integrator
        base ``(sigma_t / sigma_s) x - alpha_t h phi_1(h) x0_s``, the scale ``alpha_t B(h)`` of
        the higher-order terms, the differences ``D_m / r_m`` of earlier outputs, ``R`` and ``b``."""
        source, m0 = self.points[-1], self.outputs[-1]
        target = source + 1
        earlier = [(self.points[-(k + 1)], self.outputs[-(k + 1)]) for k in range(1, order)]
        h_phi_1, b_h, rks, rows, b = self._coefficients(source, target, order, [p for p, _ in earlier])
        alpha_t = self.levels.alpha[target]
        base = scalar(self.levels.sigma[target] / self.levels.sigma[source], x) * x - scalar(alpha_t * h_phi_1, x) * m0
        differences = [(m - m0) / scalar(r, m) for (_, m), r in zip(earlier, rks, strict=True)]
        return base, scalar(alpha_t * b_h, x), m0, differences, rows, b

    def predict(self, x: Tensor, order: int) -> Tensor:
        """UniP-p: from the latest output's point ``s`` to ``s + 1`` with ``order`` outputs."""
        base, scale, _, differences, rows, b = self._step(x, order)
        if order == 1:
            return base
        rhos = torch.tensor([0.5], dtype=torch.float64) if order == 2 else torch.linalg.solve(rows[:-1, :-1], b[:-1])
        return base - scale * sum(scalar(rho, x) * d for rho, d in zip(rhos, differences, strict=True))

    def correct(self, x_source: Tensor, x0_target: Tensor, order: int) -> Tensor:
        """UniC: redo the step from the latest output's point ``s`` (where the sample was
        ``x_source``) to ``s + 1`` with the data prediction ``x0_target`` made at ``s + 1``."""
        base, scale, m0, differences, rows, b = self._step(x_source, order)
        rhos = torch.tensor([0.5], dtype=torch.float64) if order == 1 else torch.linalg.solve(rows, b)
        residual = scalar(rhos[-1], x0_target) * (x0_target - m0)
        for rho, d in zip(rhos[:-1], differences, strict=True):
            residual = residual + scalar(rho, d) * d
        return base - scale * residual


#: ``compensate(i, x, stepper, order)``: called after the data prediction at step ``i`` is kept
#: and before the predictor leaves ``x``; it may replace ``stepper.outputs[-1]``.
Compensation = Callable[[int, Tensor, UniPCStepper, int], None]


def run_unipc(denoise, noise: Tensor, schedule: SamplingSchedule, *, order: int, variant: str,
              lower_order_final: bool, callback, compensate: Compensation | None = None, history: int = 0,
              name: str = "unipc") -> Tensor:
    """The UniPC sampling loop, with an optional compensation of the kept data prediction."""
    levels = NoiseLevels.of(schedule, name)
    stepper = UniPCStepper(levels, order=order, variant=variant, history=history)
    n = len(schedule)
    x, x_source, step_order, replaced = noise, None, 1, False
    for i, t in enumerate(schedule.timesteps):
        x0 = denoise(x, timestep_batch(t, x))
        if x_source is not None and not replaced:
            x = stepper.correct(x_source, x0, step_order)
        stepper.remember(i, x0)
        step_order = min(order, n - i) if lower_order_final else order
        step_order = min(step_order, i + 1)
        if compensate is not None:
            compensate(i, x, stepper, step_order)
        x_source = x
        x, replaced = after_step(callback, i, t, stepper.predict(x, step_order), x0)
    return x


def sample_unipc(
    denoise,
    noise: Tensor,
    schedule: SamplingSchedule,
    *,
    order: int = 2,
    variant: str = "bh2",
    lower_order_final: bool = True,
    generator: torch.Generator | None = None,
    callback=None,
) -> Tensor:
    """UniPC, multistep predictor-corrector in data prediction (Zhao et al. 2023, Algs. 1-2).

    A callback that replaces the sample skips the next correction: the replacement goes on as it is."""
    return run_unipc(denoise, noise, schedule, order=order, variant=variant, lower_order_final=lower_order_final,
                     callback=callback)
