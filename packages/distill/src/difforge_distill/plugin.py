"""Registers the distillation objectives with difforge. Every component is a lazy reference:
nothing here imports torch."""

from __future__ import annotations

from difforge.plugin_api import hookimpl, lazy

OBJECTIVES = {"lcm": "difforge_distill.lcm:LCMObjective"}


@hookimpl
def difforge_register_objectives():
    return {name: lazy(reference) for name, reference in OBJECTIVES.items()}
