"""Registers the steering methods with difforge. Every component is a lazy reference: nothing
here imports torch."""

from __future__ import annotations

from difforge.plugin_api import hookimpl, lazy

STEERING = {
    "fk": "difforge_steer.fk:fk_steering",
    "svdd": "difforge_steer.svdd:svdd",
    "best-of-n": "difforge_steer.best_of_n:best_of_n",
}


@hookimpl
def difforge_register_steering():
    return {name: lazy(reference) for name, reference in STEERING.items()}
