"""Replay a ``difforge.train`` run through a hand-written loop.

When a training script moves from its own loop to ``difforge.train``, the honest check is that
the library computes what the old loop computed. :func:`recording_objective` wraps an objective
class so that a run records, for every step, the batch it read and the state of the run's
generator before the step, plus deep copies of the modules it trains as they were before the
first step (in train mode). Feed those to the old loop (same initial weights, same batches, the generator set
to the recorded state before each step) and compare the losses and trained weights::

    Recording = recording_objective(get_registry("objectives").get("denoising"))
    register_plugin(plugin_with(difforge_register_objectives=lambda: {"recorded": Recording}))
    result = difforge.train(config_with_objective("recorded"))
    run = Recording.runs[-1]          # run.initial: {name: module}, run.steps: [(batch, state)]
    start = snapshot(denoiser=run.initial["denoiser"])
    ...                               # the old loop, trained on run.steps
    assert update_difference(snapshot(denoiser=trained), snapshot(denoiser=replayed), start) < 1e-3
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def recording_objective(base: type) -> type:
    """A subclass of the objective class ``base`` that records its run (see the module docstring);
    the class attribute ``runs`` lists every instance that was set up, most recent last."""

    class Recording(base):
        runs: list[Any] = []

        def setup(self, context) -> None:
            # in train mode, as the loop trains them (some diffusers blocks take other kernels in eval mode)
            self.initial = {name: copy.deepcopy(module).train()
                            for name, module in self.trainable_modules(context.config).items()}
            self.steps: list[tuple[dict[str, Any], torch.Tensor]] = []
            super().setup(context)
            Recording.runs.append(self)

        def loss(self, batch, denoiser, generator):
            snapshot = {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in batch.items()}
            self.steps.append((snapshot, generator.get_state()))
            return super().loss(batch, denoiser, generator)

    Recording.__name__ = Recording.__qualname__ = f"Recording{base.__name__}"
    return Recording


def snapshot(**modules: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the modules' tensors, keyed ``<name>.<tensor>``."""
    return {f"{name}.{key}": value.detach().clone()
            for name, module in modules.items() for key, value in module.state_dict().items()}


def update_difference(library: Mapping[str, torch.Tensor], replayed: Mapping[str, torch.Tensor],
                      initial: Mapping[str, torch.Tensor]) -> float:
    """How far two trainings from the same ``initial`` weights ended apart, relative to how far
    they moved: ``|library - replayed| / |replayed - initial|`` over all tensors of ``replayed``
    (0 when they trained the same weights bitwise)."""
    difference = sum(float((library[k].float() - v.float()).pow(2).sum()) for k, v in replayed.items())
    update = sum(float((v.float() - initial[k].float()).pow(2).sum()) for k, v in replayed.items())
    if update == 0:
        raise ValueError("the replayed training did not change any weight")
    return (difference / update) ** 0.5


__all__ = ["recording_objective", "snapshot", "update_difference"]
