"""Registers the __domain__ plugin with difforge. Components are lazy references, so loading the
plugin (``difforge --help``) imports neither torch nor this package's modules."""

from __future__ import annotations

from difforge.plugin_api import hookimpl, lazy


@hookimpl
def difforge_register_datasets():
    return {"__domain__-waves": lazy("difforge___domain__.world:WavesDataset")}


@hookimpl
def difforge_register_rewards():
    return {"__domain__-frequency": lazy("difforge___domain__.world:FrequencyReward", call=True)}
