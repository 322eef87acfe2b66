"""The SaRA adapter type and its sparse-update tuner.

Only the ``k`` selected entries of a layer are a parameter (a length-``k`` vector scattered
into the weight), so backpropagation keeps ``k`` gradients per layer instead of a dense
weight-sized one: the paper's "unstructured backpropagation".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..layer_adapter import LayerAdapter, module_matches
from ..tuned_layer import Tuner, base_module_names
from .config import SaraOptions

TARGETS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class SparseDeltaTuner(Tuner):
    """A sparse update of a layer's weight: trainable ``values`` at ``index`` (flat positions),
    plus a frozen part (``fixed_index``/``fixed_values``) kept from earlier selections."""

    def __init__(self, weight: Tensor, ratio: float) -> None:
        super().__init__()
        self.shape = tuple(weight.shape)
        k = max(1, int(round(ratio * weight.numel())))
        self.register_buffer("index", smallest(weight.detach(), k))
        self.register_buffer("fixed_index", torch.zeros(0, dtype=torch.long, device=weight.device))
        self.register_buffer("fixed_values", torch.zeros(0, dtype=weight.dtype, device=weight.device))
        self.values = nn.Parameter(torch.zeros(k, dtype=weight.dtype, device=weight.device))

    def delta(self) -> Tensor:
        """The dense update, weight-shaped."""
        flat = torch.zeros(math.prod(self.shape), dtype=self.values.dtype, device=self.values.device)
        flat = flat.index_add(0, self.fixed_index, self.fixed_values.to(flat.dtype))
        return flat.index_add(0, self.index, self.values).view(self.shape)

    def edit_params(self, params, scale):
        return {**params, "weight": params["weight"] + scale * self.delta().to(params["weight"].dtype)}

    def nuclear_norm(self) -> Tensor:
        """Nuclear norm of the update as an (out, in * kernel) matrix."""
        return torch.linalg.matrix_norm(self.delta().reshape(self.shape[0], -1), ord="nuc")

    @torch.no_grad()
    def reselect(self, weight: Tensor) -> None:
        """Keep the update so far, and make the ``k`` now-smallest entries of ``weight + update``
        the trainable ones (the paper's progressive parameter adjustment)."""
        total = self.delta().reshape(-1)
        kept = total.nonzero().squeeze(1)
        self.fixed_index, self.fixed_values = kept, total[kept].clone()
        self.index = smallest(weight.detach() + total.view(self.shape), self.values.numel())
        self.values.zero_()


def smallest(weight: Tensor, k: int) -> Tensor:
    """Flat positions of the ``k`` entries of smallest absolute value."""
    return torch.topk(weight.abs().reshape(-1), k, largest=False).indices.sort().values


class SaraAdapter(LayerAdapter):
    """SaRA: sparse low-rank fine-tuning of the ineffective (smallest) weights."""

    name = "sara"
    options_model = SaraOptions
    tuner_types = (SparseDeltaTuner,)

    def build_tuners(self, model, options: SaraOptions):
        return {name: SparseDeltaTuner(module.weight, options.ratio)
                for name, module in base_module_names(model).items()
                if isinstance(module, TARGETS) and (not options.target_modules
                                                    or module_matches(name, options.target_modules))}

    def regularization(self, model, adapter_name):
        weight = self.options(model, adapter_name).nuclear_weight
        if weight == 0:
            return None
        tuners = [layer.tuners[adapter_name] for layer in self._layers(model, adapter_name).values()]
        return weight * torch.stack([t.nuclear_norm() for t in tuners]).sum()

    def on_step_end(self, model, adapter_name, step, total_steps):
        moments = {max(1, int(round(f * total_steps))) for f in self.options(model, adapter_name).reselect_at}
        if step not in moments or step >= total_steps:
            return []
        reset = []
        for layer in self._layers(model, adapter_name).values():
            tuner = layer.tuners[adapter_name]
            tuner.reselect(layer.own_params()["weight"])
            reset.append(tuner.values)
        return reset
