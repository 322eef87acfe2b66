"""The composable sparse fine-tuning adapter type.

Phase 1 trains a dense difference on every target entry; at ``phase1_fraction`` of training
the ``density`` share of entries that moved most (over all layers) become the mask, the
difference is reset to zero, and phase 2 retrains only the masked entries (LT-SFT).
"""

from __future__ import annotations

import torch
from torch import nn

from ..layer_adapter import LayerAdapter, module_matches
from ..tuned_layer import Tuner, base_module_names
from .config import SparseFtOptions

TARGETS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class MaskedDeltaTuner(Tuner):
    """``weight + delta * mask``; the mask is all ones until the sparse phase starts."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros_like(weight))
        self.register_buffer("mask", torch.ones_like(weight))

    def edit_params(self, params, scale):
        return {**params, "weight": params["weight"] + scale * (self.delta * self.mask).to(params["weight"].dtype)}

    def sparsity(self) -> float:
        """Fraction of entries outside the mask."""
        return 1.0 - float(self.mask.mean())


class SparseFtAdapter(LayerAdapter):
    """LT-SFT: train all, keep the top-k changed entries, reset and retrain them sparsely."""

    name = "sparse-ft"
    options_model = SparseFtOptions
    tuner_types = (MaskedDeltaTuner,)

    def build_tuners(self, model, options):
        return {name: MaskedDeltaTuner(module.weight) for name, module in base_module_names(model).items()
                if isinstance(module, TARGETS) and (not options.target_modules
                                                    or module_matches(name, options.target_modules))}

    def num_trainable(self, model, adapter_name) -> int:
        """Entries inside the mask: every target entry in phase 1, the kept ones after it."""
        return int(sum(float(layer.tuners[adapter_name].mask.sum())
                       for layer in self._layers(model, adapter_name).values()))

    def on_step_end(self, model, adapter_name, step, total_steps):
        options = self.options(model, adapter_name)
        if step != max(1, int(round(options.phase1_fraction * total_steps))):
            return []
        tuners = [layer.tuners[adapter_name] for layer in self._layers(model, adapter_name).values()]
        self.choose_mask(tuners, options.density)
        return [t.delta for t in tuners]

    @staticmethod
    @torch.no_grad()
    def choose_mask(tuners: list[MaskedDeltaTuner], density: float) -> None:
        """Keep the ``density`` share of entries with the largest |delta| (over all layers) and
        restart the difference from zero."""
        moved = torch.cat([t.delta.abs().reshape(-1) for t in tuners])
        k = max(1, int(round(density * moved.numel())))
        threshold = torch.topk(moved, k).values[-1]
        for t in tuners:
            t.mask.copy_((t.delta.abs() >= threshold).to(t.mask.dtype))
            t.delta.zero_()
