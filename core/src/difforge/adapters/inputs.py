"""Per-call inputs of adapters that add computation (an IP-Adapter's image prompt, an
SC-Tuner's condition map).

They travel in the ``extra`` mapping of :meth:`difforge.Backbone.predict` like any other model
input; :func:`adapter_inputs` hands each to the adapters that declare it, for the duration of
one forward pass only, so nothing is left set between calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import nn

from .layer_adapter import OPTIONS_ATTR


def input_adapters(model: nn.Module) -> list[tuple[Any, str]]:
    """``(adapter type, adapter name)`` of each adapter on ``model`` that takes per-call inputs."""
    from ..plugins import get_registry

    registry = get_registry("adapters")
    found = []
    for name, (kind, _) in getattr(model, OPTIONS_ATTR, {}).items():
        adapter_type = registry.get(kind)
        if adapter_type.input_names:
            found.append((adapter_type, name))
    return found


def adapter_input_names(model: nn.Module) -> frozenset[str]:
    """Every per-call input name the adapters on ``model`` take."""
    return frozenset().union(*(t.input_names for t, _ in input_adapters(model)))


@contextmanager
def adapter_inputs(model: nn.Module, inputs: Mapping[str, Any]) -> Iterator[None]:
    """Inside: the adapters on ``model`` see their entries of ``inputs``; an input that no
    adapter (and not the denoiser) takes is a one-line error naming it."""
    if not inputs:
        yield
        return
    adapters = input_adapters(model)
    unknown = set(inputs) - frozenset().union(*(t.input_names for t, _ in adapters))
    if unknown:
        raise ValueError(f"extra model input(s) {', '.join(sorted(unknown))}: neither {type(model).__name__} nor "
                         f"an adapter on it takes them")
    bound = []
    try:
        for adapter_type, name in adapters:
            given = {k: v for k, v in inputs.items() if k in adapter_type.input_names}
            if given:
                adapter_type.bind_inputs(model, name, given)
                bound.append((adapter_type, name))
        yield
    finally:
        for adapter_type, name in bound:
            adapter_type.bind_inputs(model, name, None)


def adapter_null_inputs(model: nn.Module, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The unconditional counterparts of ``inputs`` that adapters define (for classifier-free
    guidance); inputs without one are absent."""
    nulls: dict[str, Any] = {}
    for adapter_type, _ in input_adapters(model):
        given = {k: v for k, v in inputs.items() if k in adapter_type.input_names}
        if given:
            nulls.update(adapter_type.null_inputs(given))
    return nulls
