"""Declarative, order-free registries of named components.

Each kind of component (backbones, objectives, rewards, ...) has one :class:`Registry`.
Entries record the plugin that registered them, so that a clash names both plugins and a
plugin that is unregistered takes its entries with it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import RegistryError

#: The kinds of component a plugin can register, each fed by one ``difforge_register_<kind>`` hook.
KINDS: tuple[str, ...] = (
    "backbones",
    "parameterizations",
    "schedulers",
    "datasets",
    "objectives",
    "adapters",
    "rewards",
    "captioners",
    "samplers",
    "guidance",
    "metrics",
    "commands",
)


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, the object, and the plugin that registered it."""

    name: str
    obj: Any
    owner: str


class Registry:
    """A mapping from names to components of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, obj: Any, owner: str) -> None:
        """Register ``obj`` under ``name`` on behalf of plugin ``owner``; a second owner is an error."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind}: plugin {owner!r} registered an invalid name {name!r}")
        existing = self._entries.get(name)
        if existing is not None:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: by plugin {existing.owner!r} "
                f"and by plugin {owner!r}"
            )
        self._entries[name] = Entry(name, obj, owner)

    def remove_owner(self, owner: str) -> list[str]:
        """Drop every entry registered by ``owner``; returns the names removed."""
        names = [n for n, e in self._entries.items() if e.owner == owner]
        for n in names:
            del self._entries[n]
        return names

    def get(self, name: str) -> Any:
        """Return the component called ``name``; an unknown name lists the known ones."""
        try:
            return self._entries[name].obj
        except KeyError:
            known = sorted(self._entries)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RegistryError(
                f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} {name!r}{hint}; "
                f"known: {', '.join(known) or 'none'}"
            ) from None

    def entry(self, name: str) -> Entry:
        """Return the full :class:`Entry` (object and owner) for ``name``."""
        self.get(name)
        return self._entries[name]

    def owned_by(self, owner: str) -> list[str]:
        """Names registered by plugin ``owner``, sorted."""
        return sorted(n for n, e in self._entries.items() if e.owner == owner)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
