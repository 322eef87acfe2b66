"""difforge-solvers: fast solvers of the diffusion probability-flow ODE, registered as the
samplers ``dpmpp_2m`` (DPM-Solver++(2M)), ``unipc`` (UniPC-bh2) and ``dc_solver`` (UniPC with
DC-Solver's dynamic compensation; its ratios come from :func:`search_dc_ratios`), and MR
Sampler for mean-reverting diffusion (:func:`sample_mrs`, ``difforge restore``)."""

from __future__ import annotations

__all__ = ["MeanRevertingDenoiser", "MeanRevertingSchedule", "NoiseLevels", "dynamic_compensation",
           "load_dc_ratios", "load_mean_reverting", "sample_dc_solver", "sample_dpmpp_2m", "sample_mr_euler",
           "sample_mr_euler_maruyama", "sample_mrs", "sample_unipc", "save_dc_ratios", "search_dc_ratios"]


def __getattr__(name: str):
    import importlib

    modules = {"NoiseLevels": "noise_levels", "sample_dpmpp_2m": "dpm_solver", "sample_unipc": "unipc",
               "dynamic_compensation": "dc_solver", "sample_dc_solver": "dc_solver",
               "search_dc_ratios": "dc_solver", "save_dc_ratios": "dc_solver", "load_dc_ratios": "dc_solver",
               "MeanRevertingSchedule": "mean_reverting", "MeanRevertingDenoiser": "mean_reverting",
               "load_mean_reverting": "mean_reverting", "sample_mrs": "mrs", "sample_mr_euler": "mrs",
               "sample_mr_euler_maruyama": "mrs"}
    if name in modules:
        return getattr(importlib.import_module(f"difforge_solvers.{modules[name]}"), name)
    raise AttributeError(f"module 'difforge_solvers' has no attribute {name!r}")
