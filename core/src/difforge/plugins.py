"""Plugin discovery, isolated loading and the registries they fill.

Plugins are found through the ``difforge`` entry-point group from package metadata alone
(nothing is imported to find them). Each one is then checked against the ``difforge``
version range its distribution declares, imported inside error handling, and registered
with a pluggy manager. A plugin that fails is reported with its distribution name and the
reason; the core keeps working. ``DIFFORGE_DISABLE_PLUGINS`` (names, or ``all``) skips
plugins; strict mode (``DIFFORGE_STRICT_PLUGINS=1`` or ``difforge --strict-plugins``) turns
any failure into a :class:`~difforge.errors.PluginError`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from typing import Any

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from . import __version__, hookspecs
from .errors import PluginError
from .registry import KINDS, Registry

CORE_PLUGIN_NAME = "difforge"
DISABLE_ENV = "DIFFORGE_DISABLE_PLUGINS"
STRICT_ENV = "DIFFORGE_STRICT_PLUGINS"

#: First-party distributions: name -> (what it adds, how to install it from a source checkout).
KNOWN_PLUGINS: dict[str, tuple[str, str]] = {
    "difforge-zoo": ("shapes world, scorer and the embedded tiny Stable Diffusion", "packages/zoo"),
    "difforge-align": ("alignment objectives: Diffusion-DPO, DCPO, PSO, SePPO, D3PO, DDPO, RLCM, TexForce, AlignProp",
                       "packages/align"),
    "difforge-guard": ("FreezeAsGuard masks (difforge freeze-guard)", "packages/guard"),
    "difforge-audio": ("spectrogram diffusion, Music ControlNet", "plugins/audio"),
    "difforge-video": ("video diffusion, warped-noise motion control", "plugins/video"),
    "difforge-3d": ("3D / PBR texture generation (trimesh, nerfstudio)", "plugins/3d"),
    "difforge-medical": ("medical imaging (nibabel)", "plugins/medical"),
    "difforge-robotics": ("diffusion policies (lerobot)", "plugins/robotics"),
    "difforge-clip": ("CLIP distillation (SDS-CLIP)", "plugins/clip"),
}


@dataclass
class PluginStatus:
    """What happened to one plugin: ``loaded``, ``failed``, ``disabled``, ``incompatible``
    or ``not installed`` (a known first-party plugin that is absent)."""

    name: str
    distribution: str
    version: str
    status: str
    reason: str = ""
    load_time_s: float = 0.0
    registered: dict[str, list[str]] = field(default_factory=dict)
    install: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("loaded", "disabled", "not installed")

    def describe(self) -> str:
        """The status as printed by ``difforge plugins`` (e.g. ``failed: ImportError: ...``)."""
        return f"{self.status}: {self.reason}" if self.reason else self.status


class DifforgePluginManager(pluggy.PluginManager):
    """A pluggy manager whose registration hooks fill one :class:`Registry` per kind.

    The historic registration hooks are called once, before any plugin is registered; pluggy
    then replays them for each plugin as it registers, which lets every entry be attributed
    to the plugin that made it.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        self.statuses: list[PluginStatus] = []
        self._registering: str | None = None
        for kind in KINDS:
            hook = getattr(self.hook, f"difforge_register_{kind}")
            hook.call_historic(result_callback=partial(self._collect, kind), kwargs={})

    def _collect(self, kind: str, result: Any) -> None:
        owner = self._registering or "<unknown>"
        if not isinstance(result, Mapping):
            raise PluginError(
                f"plugin {owner!r}: difforge_register_{kind} must return a mapping "
                f"name -> component, got {type(result).__name__}"
            )
        for name, obj in result.items():
            self.registries[kind].add(name, obj, owner)

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register ``plugin``; if any of its registrations fails, nothing of it remains."""
        name = name or self.get_canonical_name(plugin)
        self._registering = name
        try:
            return super().register(plugin, name)
        except BaseException:
            if self.is_registered(plugin):
                self.unregister(plugin, name)
            else:
                self._forget(name)
            raise
        finally:
            self._registering = None

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        """Unregister a plugin and drop everything it registered."""
        name = name or (self.get_name(plugin) if plugin is not None else None)
        result = super().unregister(plugin, name)
        if name:
            self._forget(name)
        return result

    def _forget(self, name: str) -> None:
        for registry in self.registries.values():
            registry.remove_owner(name)

    def registered_by(self, name: str) -> dict[str, list[str]]:
        """``{kind: [names]}`` registered by plugin ``name`` (kinds with no entry omitted)."""
        found = {kind: reg.owned_by(name) for kind, reg in self.registries.items()}
        return {kind: names for kind, names in found.items() if names}


def _disabled_names() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip().lower() for part in raw.replace(";", ",").split(",") if part.strip()}


def _required_core_range(dist: metadata.Distribution) -> str | None:
    """The ``difforge`` version specifier a distribution requires, if any (extras ignored)."""
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name.lower() != "difforge":
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        return str(req.specifier)
    return None


def _discover() -> list[tuple[metadata.EntryPoint, str, str]]:
    """Entry points of group ``difforge`` with their distribution name and version, deduplicated."""
    seen: set[tuple[str, str]] = set()
    found = []
    for ep in metadata.entry_points(group=hookspecs.PROJECT_NAME):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ep.module.split(".")[0]
        version = dist.version if dist is not None else "?"
        key = (dist_name.lower(), ep.name)
        if key in seen:
            continue
        seen.add(key)
        found.append((ep, dist_name, version))
    return found


def load_plugins(pm: DifforgePluginManager, strict: bool = False) -> list[PluginStatus]:
    """Register the core, then every installed plugin, isolating failures; returns the statuses."""
    from . import builtin

    t0 = time.perf_counter()
    pm.register(builtin, CORE_PLUGIN_NAME)
    statuses = [
        PluginStatus(
            name=CORE_PLUGIN_NAME,
            distribution="difforge",
            version=__version__,
            status="loaded",
            load_time_s=time.perf_counter() - t0,
            registered=pm.registered_by(CORE_PLUGIN_NAME),
        )
    ]
    disabled = _disabled_names()
    core_version = Version(__version__)
    discovered = _discover()
    per_dist: dict[str, int] = {}
    for _, dist_name, _ in discovered:
        per_dist[dist_name] = per_dist.get(dist_name, 0) + 1
    for ep, dist_name, version in discovered:
        name = dist_name if per_dist[dist_name] == 1 else f"{dist_name}:{ep.name}"
        status = PluginStatus(name=name, distribution=dist_name, version=version, status="loaded")
        statuses.append(status)
        if "all" in disabled or {dist_name.lower(), ep.name.lower(), name.lower()} & disabled:
            status.status, status.reason = "disabled", f"by {DISABLE_ENV}"
            continue
        wanted = _required_core_range(ep.dist) if ep.dist is not None else None
        if wanted and core_version not in SpecifierSet(wanted, prereleases=True):
            status.status = "incompatible"
            status.reason = f"requires difforge{wanted}, this is difforge {__version__}"
            continue
        t0 = time.perf_counter()
        try:
            plugin = ep.load()
            pm.register(plugin, name)
        except Exception as exc:  # noqa: BLE001 - a plugin must never take the core down
            status.status = "failed"
            status.reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        status.load_time_s = time.perf_counter() - t0
        status.registered = pm.registered_by(name)
    installed = {s.distribution.lower() for s in statuses}
    for dist_name, (what, source) in KNOWN_PLUGINS.items():
        if dist_name.lower() not in installed:
            statuses.append(
                PluginStatus(
                    name=dist_name,
                    distribution=dist_name,
                    version="",
                    status="not installed",
                    reason=what,
                    install=f"pip install -e {source}  (or: pip install {dist_name})",
                )
            )
    pm.statuses = statuses
    if strict:
        _raise_if_any_failed(statuses)
    return statuses


def _raise_if_any_failed(statuses: list[PluginStatus]) -> None:
    bad = [s for s in statuses if not s.ok]
    if bad:
        raise PluginError("strict plugin mode: " + "; ".join(f"{s.distribution} {s.describe()}" for s in bad))


_manager: DifforgePluginManager | None = None


def strict_from_env() -> bool:
    """Whether ``DIFFORGE_STRICT_PLUGINS`` asks for strict plugin loading."""
    return os.environ.get(STRICT_ENV, "").lower() in ("1", "true", "yes", "on")


def get_plugin_manager(strict: bool | None = None) -> DifforgePluginManager:
    """The process-wide plugin manager, created and loaded on first use."""
    global _manager
    if _manager is None:
        pm = DifforgePluginManager()
        load_plugins(pm, strict=strict_from_env() if strict is None else strict)
        _manager = pm
    elif strict:
        _raise_if_any_failed(_manager.statuses)
    return _manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager; the next call to :func:`get_plugin_manager` reloads."""
    global _manager
    _manager = None


def get_registry(kind: str) -> Registry:
    """The registry of one kind (see :data:`difforge.registry.KINDS`)."""
    if kind not in KINDS:
        raise PluginError(f"unknown registry kind {kind!r}; known: {', '.join(KINDS)}")
    return get_plugin_manager().registries[kind]


def register_plugin(plugin: Any, name: str | None = None) -> str | None:
    """Register an in-process plugin (a module or object with hookimpls) with the manager."""
    return get_plugin_manager().register(plugin, name)


def plugin_statuses() -> list[PluginStatus]:
    """The status of every plugin, as shown by ``difforge plugins``."""
    return list(get_plugin_manager().statuses)


def plugin_report(as_json: bool = False) -> str:
    """The table printed by ``difforge plugins`` (or JSON)."""
    statuses = plugin_statuses()
    if as_json:
        return json.dumps([s.__dict__ for s in statuses], indent=2)
    lines = [f"{'plugin':<28} {'version':<10} {'status':<14} {'load ms':>8}  registered / notes"]
    for s in statuses:
        if s.status == "not installed":
            note = f"{s.reason}; install: {s.install}"
        else:
            note = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in s.registered.items())
            if s.reason:
                note = f"{s.reason}" + (f" | {note}" if note else "")
        lines.append(
            f"{s.distribution if s.name == s.distribution else s.name:<28} {s.version:<10} {s.status:<14} "
            f"{s.load_time_s * 1000:>8.1f}  {note}"
        )
    return "\n".join(lines)
