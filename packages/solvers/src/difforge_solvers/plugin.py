"""Registers the solvers with difforge's ``samplers`` registry. Every component is a lazy
reference: nothing here imports torch."""

from __future__ import annotations

from difforge.plugin_api import hookimpl, lazy

SAMPLERS = {
    "dpmpp_2m": "difforge_solvers.dpm_solver:sample_dpmpp_2m",
    "unipc": "difforge_solvers.unipc:sample_unipc",
    "dc_solver": "difforge_solvers.dc_solver:sample_dc_solver",
    "obc": "difforge_solvers.boundary:sample_from_boundary",
}


@hookimpl
def difforge_register_samplers():
    return {name: lazy(reference) for name, reference in SAMPLERS.items()}
