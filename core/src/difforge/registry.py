"""Declarative, order-free registries of named components.

Each kind of component (backbones, objectives, rewards, ...) has one :class:`Registry`.
Entries record the plugin that registered them, so that a clash names both plugins and a
plugin that is unregistered takes its entries with it.

A component may be registered as a :func:`lazy` reference (``"package.module:attribute"``):
its module is imported the first time the component is looked up, so listing what is
registered (``difforge --help``, ``difforge plugins``) imports neither torch nor diffusers.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import RegistryError

#: The kinds of component a plugin can register, each fed by one ``difforge_register_<kind>`` hook.
KINDS: tuple[str, ...] = (
    "backbones",
    "denoisers",
    "parameterizations",
    "schedulers",
    "datasets",
    "objectives",
    "adapters",
    "rewards",
    "captioners",
    "samplers",
    "guidance",
    "steering",
    "metrics",
    "renderers",
    "commands",
)


@dataclass(frozen=True)
class LazyComponent:
    """A component named by ``"module:attribute"`` and imported on first use; with ``call``
    the attribute is called without arguments and its result is the component (e.g. a
    :class:`~difforge.rewards.Reward` class whose instance is registered)."""

    reference: str
    call: bool = False

    def load(self) -> Any:
        """Import the module and return the component."""
        module, sep, attribute = self.reference.partition(":")
        if not sep or not module or not attribute:
            raise ValueError(f"lazy reference {self.reference!r} is not of the form 'module:attribute'")
        obj: Any = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
        return obj() if self.call else obj


def lazy(reference: str, *, call: bool = False) -> LazyComponent:
    """Register ``"module:attribute"`` without importing it; see :class:`LazyComponent`."""
    return LazyComponent(reference, call)


class Entry:
    """One registered component: its name, the object (loaded on first access when it was
    registered :func:`lazy`), and the plugin that registered it."""

    __slots__ = ("_obj", "kind", "name", "owner")

    def __init__(self, name: str, obj: Any, owner: str, kind: str = "") -> None:
        self.name, self._obj, self.owner, self.kind = name, obj, owner, kind

    @property
    def obj(self) -> Any:
        if isinstance(self._obj, LazyComponent):
            try:
                self._obj = self._obj.load()
            except Exception as exc:  # noqa: BLE001 - any import problem becomes one line naming the plugin
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                raise RegistryError(f"{self.kind} {self.name!r} of plugin {self.owner!r} cannot be loaded from "
                                    f"{self._obj.reference!r}: {reason}") from None
        return self._obj


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
        self._entries[name] = Entry(name, obj, owner, self.kind)

    def remove_owner(self, owner: str) -> list[str]:
        """Drop every entry registered by ``owner``; returns the names removed."""
        names = [n for n, e in self._entries.items() if e.owner == owner]
        for n in names:
            del self._entries[n]
        return names

    def get(self, name: str) -> Any:
        """Return the component called ``name``; an unknown name lists the known ones."""
        entry = self._entries.get(name)
        if entry is None:
            known = sorted(self._entries)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RegistryError(
                f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} {name!r}{hint}; "
                f"known: {', '.join(known) or 'none'}"
            )
        return entry.obj

    def entry(self, name: str) -> Entry:
        """Return the full :class:`Entry` (object and owner) for ``name``."""
        self.get(name)
        return self._entries[name]

    def owner(self, name: str) -> str:
        """The plugin that registered ``name`` (without loading a lazy component)."""
        if name not in self._entries:
            self.get(name)  # raises the one-line unknown-name error
        return self._entries[name].owner

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
