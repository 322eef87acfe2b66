"""The adapter protocol's invariants as one check any adapter type can call, as PEFT's common
tester does for its tuners: a built-in, a method package's or a third-party plugin's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: max |merged - unmerged| over the output of a merged adapter at weight 1 (fp32)
MERGE_TOLERANCE = 1e-5


def check_adapter_type(kind: str, make_model: Callable[[], nn.Module], forward: Callable[[nn.Module], torch.Tensor],
                       tmp_path: str | Path, options: Mapping[str, Any] | None = None,
                       inputs: Mapping[str, Any] | None = None, merge_tolerance: float = MERGE_TOLERANCE) -> None:
    """Assert the adapter protocol's invariants for the registered adapter type ``kind``:

    - it adds trainable parameters, none of them a base parameter, none listed twice, fewer than
      half the base's;
    - a perturbed adapter changes ``forward``; disabling every adapter gives the base output bit
      for bit;
    - a mergeable type merges within ``merge_tolerance`` and unmerges to the base weights; a
      non-mergeable one refuses to merge and leaves the output unchanged;
    - save, then load into a fresh model gives the same output and state bit for bit.

    ``make_model()`` builds a fresh base model (the same weights every call), ``forward(model)``
    its output on a fixed input, ``inputs`` the adapter's per-call inputs (an IP-Adapter's
    ``ip_adapter_image_embeds``), if it takes any.
    """
    from difforge.plugin_api import AdapterSet, adapter_inputs

    inputs = dict(inputs or {})

    def run(model: nn.Module, with_inputs: bool = True) -> torch.Tensor:
        with torch.no_grad(), adapter_inputs(model, inputs if with_inputs else {}):
            return forward(model)

    model = make_model().eval()
    base_out = run(model, with_inputs=False)  # no adapter yet to take the inputs
    base_params = {id(p) for p in model.parameters()}
    base_weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapters = AdapterSet(model)
    adapters.add(kind, "check", **dict(options or {}))
    listed = adapters.trainable_parameters("check")
    trainable = {id(p) for p in listed}
    assert trainable, f"{kind}: no trainable parameters"
    assert not trainable & base_params, f"{kind}: a base parameter is trainable"
    assert len(listed) == len(trainable), f"{kind}: a parameter is listed twice (the optimizer would step it twice)"
    share = adapters.num_trainable("check") / sum(w.numel() for w in base_weights.values())
    assert 0 < share < 0.5, f"{kind}: {share:.2f} of the base's size"
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in listed:
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    tuned = run(model)
    assert (tuned - base_out).abs().max() > 1e-4, f"{kind}: a perturbed adapter does not change the output"
    adapters.disable()
    assert torch.equal(run(model), base_out), f"{kind}: disabled adapters change the output"
    adapters.enable()
    if adapters.types["check"].mergeable:
        adapters.merge()
        assert (run(model) - tuned).abs().max() <= merge_tolerance, f"{kind}: merging changes the output"
        adapters.unmerge()
        restored = {_base_name(n): p for n, p in model.named_parameters()}
        drift = max((restored[n] - w).abs().max().item() for n, w in base_weights.items())
        assert drift <= 1e-6, f"{kind}: unmerging leaves the base weights {drift:.2e} off"
    else:
        try:
            adapters.merge()
        except ValueError as err:
            assert "cannot be merged" in str(err), f"{kind}: merge refused with {err!r}"
        else:
            raise AssertionError(f"{kind}: not mergeable, but merge() did not refuse")
        assert torch.equal(run(model), tuned), f"{kind}: a refused merge changed the output"
    path = adapters.save("check", Path(tmp_path) / f"{kind}-adapter")
    fresh = make_model().eval()
    loaded = AdapterSet(fresh)
    loaded.load(path.parent, "check")
    assert loaded.types["check"].name == kind, f"{kind}: loads as {loaded.types['check'].name!r}"
    assert torch.equal(run(fresh), tuned), f"{kind}: save -> load does not reproduce the output"
    saved, again = adapters.state_dict("check"), loaded.state_dict("check")
    assert saved.keys() == again.keys() and all(torch.equal(saved[k], again[k]) for k in saved), \
        f"{kind}: save -> load does not reproduce the state"


def _base_name(name: str) -> str:
    return name.replace(".base_layer", "")
