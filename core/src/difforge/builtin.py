"""The core registers its own components through the same hooks as any plugin."""

from __future__ import annotations

from .hookspecs import hookimpl


@hookimpl
def difforge_register_backbones():
    from .backbone import BUILTIN_BACKBONES

    return BUILTIN_BACKBONES


@hookimpl
def difforge_register_parameterizations():
    from .backbone import BUILTIN_PARAMETERIZATIONS

    return BUILTIN_PARAMETERIZATIONS


@hookimpl
def difforge_register_schedulers():
    from .backbone.builders import builtin_schedulers

    return builtin_schedulers()


@hookimpl
def difforge_register_datasets():
    from .alignment import ALIGNMENT_DATASETS
    from .training.data import BUILTIN_DATASETS

    return {**BUILTIN_DATASETS, **ALIGNMENT_DATASETS}


@hookimpl
def difforge_register_objectives():
    from .alignment import ALIGNMENT_OBJECTIVES
    from .training.objectives import BUILTIN_OBJECTIVES

    return {**BUILTIN_OBJECTIVES, **ALIGNMENT_OBJECTIVES}


@hookimpl
def difforge_register_adapters():
    from .adapters import BUILTIN_ADAPTERS

    return BUILTIN_ADAPTERS


@hookimpl
def difforge_register_samplers():
    from .sampling import BUILTIN_SAMPLERS

    return BUILTIN_SAMPLERS


@hookimpl
def difforge_register_guidance():
    from .sampling import BUILTIN_GUIDANCE

    return BUILTIN_GUIDANCE


@hookimpl
def difforge_register_rewards():
    from .rewards import BUILTIN_REWARDS

    return BUILTIN_REWARDS


@hookimpl
def difforge_register_metrics():
    from .metrics import BUILTIN_METRICS

    return BUILTIN_METRICS
