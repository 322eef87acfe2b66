"""Hook implementations: the module named by the ``difforge`` entry point.

Components are registered as lazy references ("module:attribute"), so that listing plugins
(``difforge --help``, ``difforge plugins``) does not import torch or this plugin's code.
"""

from __future__ import annotations

from difforge.plugin_api import hookimpl, lazy


@hookimpl
def difforge_register_rewards():
    return {"brightness": lazy("difforge_example_plugin.components:Brightness", call=True)}


@hookimpl
def difforge_register_datasets():
    return {"gradient-images": lazy("difforge_example_plugin.components:GradientImages")}


@hookimpl
def difforge_register_adapters():
    return {"bitfit": lazy("difforge_example_plugin.components:BitFitAdapter", call=True)}
