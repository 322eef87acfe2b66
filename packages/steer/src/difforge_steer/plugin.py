"""Registers the steering methods and the PPAP commands with difforge. Every component is a lazy
reference: nothing here imports torch."""

from __future__ import annotations

from difforge.plugin_api import Command, hookimpl, lazy

STEERING = {
    "fk": "difforge_steer.fk:fk_steering",
    "svdd": "difforge_steer.svdd:svdd",
    "best-of-n": "difforge_steer.best_of_n:best_of_n",
}


@hookimpl
def difforge_register_steering():
    return {name: lazy(reference) for name, reference in STEERING.items()}


@hookimpl
def difforge_register_commands():
    return {
        "train-guiders": Command("make PPAP expert guiders from a clean classifier (LoRA experts per timestep range, "
                                 "data-free transfer)", "difforge_steer.ppap.cli:configure_train",
                                 "difforge_steer.ppap.cli:run_train"),
        "guide": Command("sample with classifier guidance toward a class (a PPAP guider or a clean classifier)",
                         "difforge_steer.ppap.cli:configure_guide", "difforge_steer.ppap.cli:run_guide"),
    }
