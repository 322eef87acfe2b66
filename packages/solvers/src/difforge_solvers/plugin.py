"""Registers the solvers with difforge's ``samplers`` registry and the ``restore`` command (MR
diffusion's samplers take a condition and their own schedule, so they are the command's and the
Python API's, not the registry's). Every component is a lazy reference: nothing here imports torch."""

from __future__ import annotations

from difforge.plugin_api import Command, hookimpl, lazy

SAMPLERS = {
    "dpmpp_2m": "difforge_solvers.dpm_solver:sample_dpmpp_2m",
    "unipc": "difforge_solvers.unipc:sample_unipc",
    "dc_solver": "difforge_solvers.dc_solver:sample_dc_solver",
    "obc": "difforge_solvers.boundary:sample_from_boundary",
}


@hookimpl
def difforge_register_samplers():
    return {name: lazy(reference) for name, reference in SAMPLERS.items()}


@hookimpl
def difforge_register_commands():
    return {"restore": Command("restore a degraded image with a mean-reverting diffusion model (MR Sampler, "
                               "IR-SDE's Euler-Maruyama)", "difforge_solvers.cli:configure_restore",
                               "difforge_solvers.cli:run_restore")}
