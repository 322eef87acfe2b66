"""The DiffFit adapter type."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layer_adapter import LayerAdapter, module_matches
from ..tuned_layer import Tuner, base_module_names, channel_view
from .config import DiffFitOptions

NORMS = (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d)
SCALABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class DiffFitTuner(Tuner):
    """Offsets for a layer's bias (and norm / embedding weight) plus an optional gamma."""

    def __init__(self, module: nn.Module, train_weight: bool, add_gamma: bool) -> None:
        super().__init__()
        self.module_type = type(module)
        self.delta = nn.ParameterDict()
        for name, param in module.named_parameters(recurse=False):
            if name == "bias" or (name == "weight" and train_weight):
                self.delta[name] = nn.Parameter(torch.zeros_like(param))
        self.gamma = nn.Parameter(torch.ones(module.weight.shape[0])) if add_gamma else None

    def edit_params(self, params, scale):
        return {k: (v + scale * self.delta[k] if k in self.delta else v) for k, v in params.items()}

    def _gamma(self, scale: float) -> Tensor:
        return 1 + scale * (self.gamma - 1)

    def edit_output(self, output, scale):
        if self.gamma is None:
            return output
        return output * channel_view(self._gamma(scale), output, self.module_type)

    def fold_output(self, params, scale):
        if self.gamma is None:
            return params
        gamma = self._gamma(scale)
        out = dict(params)
        out["weight"] = params["weight"] * gamma.reshape(-1, *([1] * (params["weight"].dim() - 1)))
        if "bias" in params:
            out["bias"] = params["bias"] * gamma
        return out


class DiffFitAdapter(LayerAdapter):
    """DiffFit: biases, norms, embeddings and residual-branch scale factors (~0.1-1 % of weights)."""

    name = "difffit"
    options_model = DiffFitOptions
    tuner_types = (DiffFitTuner,)

    def build_tuners(self, model, options: DiffFitOptions):
        tuners = {}
        for name, module in base_module_names(model).items():
            if not any(name.startswith(prefix) for prefix in options.blocks):
                continue
            own = dict(module.named_parameters(recurse=False))
            if not own:
                continue
            is_norm, is_embedding = isinstance(module, NORMS), isinstance(module, nn.Embedding)
            train_weight = (is_norm and options.train_norms) or (is_embedding and options.train_embeddings)
            add_gamma = isinstance(module, SCALABLE) and module_matches(name, options.scale_targets)
            if "bias" in own or train_weight or add_gamma:
                tuners[name] = DiffFitTuner(module, train_weight, add_gamma)
        return tuners
