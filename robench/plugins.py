"""The plugin host: a pluggy manager plus a registry of components by kind and name.

Built-in plugins (the modules in ``plugins/``, installed as ``robench_plugins``) are
listed in :data:`DEFAULT_PLUGINS` and registered exactly as third-party plugins are:
as modules with ``@hookimpl`` functions. Third-party plugins are found through the
``robench`` entry-point group unless ``ROBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set.

A third-party plugin that fails to import, or whose hook raises, is recorded in
``Registry.failures`` (package and error) and skipped; it never takes down the host.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType

import pluggy

from . import __version__, hookspecs
from .components import KINDS, Component
from .errors import PluginError, did_you_mean

ENTRY_POINT_GROUP = "robench"
DISABLE_AUTOLOAD_ENV = "ROBENCH_DISABLE_PLUGIN_AUTOLOAD"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "robench_plugins.datasets",
    "robench_plugins.models",
    "robench_plugins.defenses",
    "robench_plugins.attacks",
    "robench_plugins.metrics",
    "robench_plugins.reporters",
    "robench_plugins.executors",
)
"""Modules of the built-in plugins, registered like any third-party plugin module."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered component: its class and who provided it."""

    kind: str
    name: str
    cls: type[Component]
    plugin: str
    package: str
    version: str

    def as_dict(self, verbose: bool = False) -> dict:
        info = self.cls.describe()
        out = {"kind": self.kind, "name": self.name, "package": self.package,
               "version": self.cls.version or self.version, "plugin": self.plugin,
               "summary": info["summary"]}
        for key in ("library", "threat_model", "targeted"):
            if key in info:
                out[key] = info[key]
        if verbose:
            out["doc"] = info["doc"]
            out["options"] = info["options"]
        return out


@dataclasses.dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose registration hook raised."""

    plugin: str
    package: str
    error: str


class Registry:
    """Every component known to one plugin manager, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, packages: dict[str, tuple[str, str]],
                 failures: list[PluginFailure]):
        self.pm = pm
        self.failures = list(failures)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind, base in KINDS.items():
            hook = getattr(pm.hook, f"robench_register_{kind}s")
            for impl in hook.get_hookimpls():
                package, version = packages.get(impl.plugin_name, ("unknown", ""))
                register = self._register_function(kind, base, impl.plugin_name, package, version)
                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as err:  # a broken plugin is reported, never fatal
                    self.failures.append(PluginFailure(impl.plugin_name, package,
                                                       f"{type(err).__name__}: {err}"))

    def _register_function(self, kind: str, base: type, plugin: str, package: str,
                           version: str):
        def register(cls: type[Component]) -> type[Component]:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(f"plugin {plugin!r} ({package}) registered {cls!r} as a "
                                  f"{kind}, but it is not a subclass of {base.__name__}")
            if not cls.name:
                raise PluginError(f"plugin {plugin!r} ({package}) registered {cls.__name__} "
                                  f"without a name")
            other = self._entries[kind].get(cls.name)
            if other is not None:
                raise PluginError(f"{kind} {cls.name!r} is registered twice: by {other.plugin!r} "
                                  f"({other.package}) and by {plugin!r} ({package})")
            self._entries[kind][cls.name] = Entry(kind, cls.name, cls, plugin, package, version)
            return cls
        return register

    def names(self, kind: str) -> list[str]:
        """Sorted component names of one kind."""
        return sorted(self._entries[kind])

    def entry(self, kind: str, name: str) -> Entry:
        """The entry of ``name``; an unknown name raises with the closest match."""
        try:
            return self._entries[kind][name]
        except KeyError:
            raise PluginError(f"unknown {kind} {name!r}{did_you_mean(name, self._entries[kind])}; "
                              f"`robench plugins` lists the installed ones") from None

    def get(self, kind: str, name: str) -> type[Component]:
        """The component class registered as ``name``."""
        return self.entry(kind, name).cls

    def entries(self) -> list[Entry]:
        """All entries, sorted by kind then name."""
        return [self._entries[k][n] for k in KINDS for n in sorted(self._entries[k])]


def _package_of_module(module: ModuleType) -> tuple[str, str]:
    top = module.__name__.split(".")[0]
    if top in ("robench", "robench_plugins"):
        return "robench", __version__
    for dist_name in metadata.packages_distributions().get(top, []):
        try:
            return dist_name, metadata.version(dist_name)
        except metadata.PackageNotFoundError:  # pragma: no cover - odd installs
            continue
    return top, ""


def build_registry(*, autoload: bool | None = None,
                   plugins: Iterable[ModuleType | object] = ()) -> Registry:
    """Build a plugin manager with the built-ins, entry points and extra ``plugins``.

    ``autoload`` defaults to on unless ``ROBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set to a
    non-empty value. ``plugins`` are extra modules/objects registered directly (tests
    use this to add a plugin through the public API).
    """
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    pm = pluggy.PluginManager("robench")
    pm.add_hookspecs(hookspecs)
    packages: dict[str, tuple[str, str]] = {}
    failures: list[PluginFailure] = []
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, module_name)
        packages[module_name] = ("robench", __version__)
    if autoload:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else ""
            try:
                plugin = ep.load()
                pm.register(plugin, ep.name)
            except Exception as err:
                failures.append(PluginFailure(ep.name, dist, f"{type(err).__name__}: {err}"))
                continue
            packages[ep.name] = (dist, version)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or repr(plugin)
        pm.register(plugin, name)
        packages[name] = (_package_of_module(plugin) if isinstance(plugin, ModuleType)
                          else (type(plugin).__module__.split(".")[0], ""))
    return Registry(pm, packages, failures)


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry (built on first use)."""
    global _default
    if _default is None:
        _default = build_registry()
    return _default
