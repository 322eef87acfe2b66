"""Plugin conformance: load a plugin in isolation and check what it registers."""

from __future__ import annotations

import inspect
from typing import Any

import torch

#: the keywords ``difforge.steer`` passes to a steering method (``difforge_register_steering``)
STEERING_KEYWORDS = ("reward", "particles", "num_samples", "num_steps", "guidance_scale", "generator")


def _check_component(kind: str, name: str, obj: Any) -> None:
    from difforge.plugin_api import AdapterType, Command, DenoiserSpec, Objective, Parameterization, Reward

    where = f"{kind} {name!r}"
    if kind == "rewards":
        assert isinstance(obj, Reward), f"{where}: must be a difforge.rewards.Reward instance"
        images, prompts = obj.example_inputs()
        scores = obj(images, prompts)
        assert isinstance(scores, torch.Tensor) and scores.shape == (len(images),), f"{where}: must return (N,) scores"
    elif kind == "captioners":
        assert callable(obj), f"{where}: must be callable"
        captions = obj(torch.zeros(2, 3, 32, 32))
        assert isinstance(captions, list) and len(captions) == 2 and all(isinstance(c, str) for c in captions), \
            f"{where}: must return one str per image"
    elif kind == "adapters":
        assert isinstance(obj, AdapterType), f"{where}: must be an AdapterType instance"
    elif kind == "objectives":
        assert inspect.isclass(obj) and issubclass(obj, Objective), f"{where}: must subclass Objective"
    elif kind == "parameterizations":
        assert inspect.isclass(obj) and issubclass(obj, Parameterization), f"{where}: must subclass Parameterization"
    elif kind == "commands":
        assert isinstance(obj, Command), f"{where}: must be a difforge.plugin_api.Command"
        for which in ("configure", "run"):
            assert callable(obj.resolve(which)), f"{where}: {which} must be a function or 'module:function'"
    elif kind == "steering":
        assert callable(obj), f"{where}: must be callable"
        parameters = inspect.signature(obj).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        missing = [name for name in STEERING_KEYWORDS if name not in parameters and not takes_any]
        assert len(parameters) >= 2 and not missing, \
            f"{where}: must take (backbone, prompts, *, {', '.join(STEERING_KEYWORDS)}); missing {missing}"
    elif kind == "denoisers":
        assert isinstance(obj, DenoiserSpec), f"{where}: must be a difforge.plugin_api.DenoiserSpec"
    else:
        assert callable(obj), f"{where}: must be callable"
    doc = inspect.getdoc(obj if not isinstance(obj, (Reward, AdapterType, Command, DenoiserSpec)) else type(obj))
    assert doc, f"{where}: needs a docstring"


def check_plugin(distribution: str) -> dict[str, list[str]]:
    """Assert that installed plugin ``distribution`` loads and that each component it registers
    honours its kind's protocol; returns ``{kind: [names]}``. For use in a plugin's own tests."""
    from difforge.plugin_api import DifforgePluginManager, load_plugins

    pm = DifforgePluginManager()
    statuses = load_plugins(pm)
    matching = [s for s in statuses if s.distribution.lower() == distribution.lower()]
    assert matching, f"plugin {distribution!r} is not installed (no 'difforge' entry point found)"
    status = matching[0]
    assert status.status == "loaded", f"plugin {distribution!r}: {status.describe()}"
    assert status.registered, f"plugin {distribution!r} registered nothing"
    for kind, names in status.registered.items():
        for name in names:  # a lazy component is loaded here: a broken reference fails the check
            _check_component(kind, name, pm.registries[kind].get(name))
    return status.registered
