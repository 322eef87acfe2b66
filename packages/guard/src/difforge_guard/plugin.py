"""Registers the ``freeze-guard`` command with difforge (imported only when it is chosen)."""

from __future__ import annotations

from difforge.plugin_api import Command, hookimpl


@hookimpl
def difforge_register_commands():
    return {"freeze-guard": Command("learn a FreezeAsGuard mask (tensors to freeze)",
                                    "difforge_guard.cli:configure", "difforge_guard.cli:run")}
