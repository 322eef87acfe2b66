"""The layer wrapper behind difforge's own (non-PEFT) adapter types.

A :class:`TunedLayer` wraps one module, like PEFT's tuner layers do, and holds one
:class:`Tuner` per adapter name. A tuner may edit the module's inputs (SC-Tuner's skip
features), parameters (a bias offset, a sparse weight difference) and/or output (a per-channel
scale); each is applied at the adapter's weight. Merging writes the edited parameters into the module and keeps the
originals, so unmerging restores them bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


class Tuner(nn.Module):
    """One adapter's tensors on one layer."""

    def edit_inputs(self, args: tuple, kwargs: dict, scale: float) -> tuple[tuple, dict]:
        """The layer's inputs with this adapter applied at ``scale`` (cannot be merged)."""
        return args, kwargs

    def edit_params(self, params: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
        """The layer's parameters with this adapter applied at ``scale``."""
        return params

    def edit_output(self, output: Tensor, scale: float) -> Tensor:
        """The layer's output with this adapter applied at ``scale``."""
        return output

    def edit_output_given(self, output: Tensor, args: tuple, kwargs: dict, module: nn.Module, scale: float) -> Tensor:
        """:meth:`edit_output` for tuners that also read the layer's inputs (IP-Adapter's query)."""
        return self.edit_output(output, scale)

    def fold_output(self, params: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
        """Parameters that produce :meth:`edit_output`'s effect (used by merge)."""
        return params


class TunedLayer(nn.Module):
    """A module plus named tuners; forward = the module with the active tuners applied."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.tuners = nn.ModuleDict()
        self.scales: dict[str, float] = {}
        self.active: list[str] = []
        self.enabled = True
        self.merged_originals: dict[str, Tensor] | None = None
        self.merged_names: list[str] = []

    @property
    def weight_holder(self) -> nn.Module:
        """The innermost module that owns the weights (below any PEFT wrappers)."""
        module = self.base_layer
        while hasattr(module, "base_layer"):
            module = module.base_layer
        return module

    def _prefix(self) -> str:
        prefix, module = "", self.base_layer
        while hasattr(module, "base_layer"):
            prefix, module = prefix + "base_layer.", module.base_layer
        return prefix

    def own_params(self) -> dict[str, nn.Parameter]:
        """The wrapped weights by short name (``weight``, ``bias``)."""
        return dict(self.weight_holder.named_parameters(recurse=False))

    def forward(self, *args, **kwargs):
        tuners = [] if (not self.enabled or self.merged_originals is not None) else [
            (self.tuners[n], self.scales.get(n, 1.0)) for n in self.active if n in self.tuners]
        if not tuners:
            return self.base_layer(*args, **kwargs)
        for tuner, scale in tuners:
            args, kwargs = tuner.edit_inputs(args, kwargs, scale)
        params: dict[str, Tensor] = dict(self.own_params())
        for tuner, scale in tuners:
            params = tuner.edit_params(params, scale)
        prefix = self._prefix()
        output = torch.func.functional_call(self.base_layer, {prefix + k: v for k, v in params.items()}, args, kwargs)
        for tuner, scale in tuners:
            output = tuner.edit_output_given(output, args, kwargs, self.base_layer, scale)
        return output

    @torch.no_grad()
    def merge(self, names: Iterable[str]) -> None:
        """Fold the named tuners (at their scales) into the wrapped weights."""
        names = [n for n in names if n in self.tuners and n not in self.merged_names]
        if not names:
            return
        own = self.own_params()
        if self.merged_originals is None:
            self.merged_originals = {k: v.detach().clone() for k, v in own.items()}
        # output scales must apply to every parameter edit, so merging more re-merges all
        names = [n for n in self.active if n in self.merged_names or n in names]
        params: dict[str, Tensor] = {k: v.detach().clone() for k, v in self.merged_originals.items()}
        for name in names:
            params = self.tuners[name].edit_params(params, self.scales.get(name, 1.0))
        for name in names:
            params = self.tuners[name].fold_output(params, self.scales.get(name, 1.0))
        for key, value in params.items():
            own[key].copy_(value)
        self.merged_names = names

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the weights saved by :meth:`merge`."""
        if self.merged_originals is None:
            return
        own = self.own_params()
        for key, value in self.merged_originals.items():
            own[key].copy_(value)
        self.merged_originals, self.merged_names = None, []


def channel_view(vector: Tensor, like: Tensor, module_type: type[nn.Module]) -> Tensor:
    """``vector`` (one value per output channel) shaped to broadcast over ``like``, the output of
    a ``module_type``: channels last for Linear / LayerNorm, channels first (dim 1) for convs."""
    if issubclass(module_type, (nn.Linear, nn.LayerNorm, nn.Embedding)):
        return vector
    return vector.reshape(1, -1, *([1] * (like.dim() - 2)))


def wrap(model: nn.Module, module_name: str) -> TunedLayer:
    """Replace ``model.<module_name>`` by a :class:`TunedLayer` around it (or return the existing one)."""
    module = model.get_submodule(module_name)
    if isinstance(module, TunedLayer):
        return module
    parent_name, _, child = module_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    layer = TunedLayer(module)
    setattr(parent, child, layer)
    return layer


def tuned_layers(model: nn.Module) -> dict[str, TunedLayer]:
    """Every :class:`TunedLayer` of ``model`` by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, TunedLayer)}


#: name fragments of the modules and tensors that adapters add to a model
ADAPTER_TAGS = (".lora_", ".hada_", ".lokr_", ".oft_", ".tuners.", "ip_adapter_projections.")


def is_adapter_tensor(name: str) -> bool:
    """Whether a parameter / module name belongs to an adapter rather than the base model."""
    return any(tag in name for tag in ADAPTER_TAGS)


def base_module_names(model: nn.Module) -> dict[str, nn.Module]:
    """The base model's modules by their name as if no adapter wrappers were present
    (``to_q``, not ``to_q.base_layer``); adapters' own modules are left out."""
    names = {}
    for name, module in model.named_modules():
        if isinstance(module, TunedLayer) or hasattr(module, "base_layer") or is_adapter_tensor(name):
            continue
        clean = name.replace(".base_layer", "")
        if clean not in names:
            names[clean] = module
    return names
