"""The plugin host: a pluggy manager plus a registry of components by kind and name.

Built-in plugins (the modules in ``plugins/``, installed as ``robench_plugins``) are
listed in :data:`DEFAULT_PLUGINS` and registered exactly as third-party plugins are:
as modules with ``@hookimpl`` functions. Third-party plugins are found through the
``robench`` entry-point group unless ``ROBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set; single
plugins are blocked by name with ``ROBENCH_BLOCK_PLUGINS=name1,name2`` (or ``robench -p
no:NAME``).

Plugins are isolated as pytest isolates its plugins: a plugin that fails to import,
implements a hook robench does not define (a misspelled ``robench_*`` name), raises in a
hook (``SystemExit`` included; ``KeyboardInterrupt`` still stops the program) or
registers a component name another plugin already holds is disabled as a whole and
recorded in ``Registry.failures``; built-ins and earlier plugins keep their names. A
component whose ``Options`` is not a dataclass is dropped alone. Asking for a component
that a failed plugin may have provided gives an error naming that plugin.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from . import __version__, hookspecs
from .components import KINDS, Component
from .errors import PluginError, did_you_mean

ENTRY_POINT_GROUP = "robench"
DISABLE_AUTOLOAD_ENV = "ROBENCH_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "ROBENCH_BLOCK_PLUGINS"
"""Comma-separated names of plugins not to load (entry-point or built-in module names)."""

DEFAULT_PLUGINS: tuple[str, ...] = (
    "robench_plugins.datasets",
    "robench_plugins.models",
    "robench_plugins.defenses",
    "robench_plugins.attacks",
    "robench_plugins.metrics",
    "robench_plugins.reporters",
    "robench_plugins.executors",
    "robench_plugins.commands",
)
"""Modules of the built-in plugins, registered like any third-party plugin module."""


def _one_line(text: str) -> str:
    """An error text on one line (messages are printed one per line)."""
    return " ".join(str(text).split())


def _describe_error(err: BaseException) -> str:
    return f"{type(err).__name__}: {_one_line(str(err))}".rstrip(": ")


def blocked_from_env() -> frozenset[str]:
    """Plugin names listed in ``ROBENCH_BLOCK_PLUGINS``."""
    return frozenset(n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip())


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
    """A plugin (or one of its components) that was disabled, and why."""

    plugin: str
    package: str
    error: str
    component: str | None = None

    def __str__(self) -> str:
        what = f"component {self.component!r} of plugin" if self.component else "plugin"
        return f"{what} {self.plugin!r} ({self.package}) disabled: {self.error}"


class Registry:
    """Every component known to one plugin manager, by kind and name.

    Registration runs in two steps: every plugin's hooks are called (each contained),
    then the plugins' offers are accepted in registration order (built-ins first); a
    plugin whose hook failed, or that offers an invalid class or a taken name, is
    disabled with everything it offered.
    """

    def __init__(self, pm: pluggy.PluginManager, packages: dict[str, tuple[str, str]],
                 failures: list[PluginFailure]):
        self.pm = pm
        self.failures = list(failures)
        self._packages = packages
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        offers: dict[str, list[tuple[str, Any]]] = {}
        broken: dict[str, str] = {}
        for kind in KINDS:
            hook = getattr(pm.hook, f"robench_register_{kind}s")
            for impl in hook.get_hookimpls():
                offered = offers.setdefault(impl.plugin_name, [])
                error = _call_contained(impl, lambda cls, _k=kind, _o=offered: (
                    _o.append((_k, cls)) or cls))
                if error:
                    broken.setdefault(impl.plugin_name, error)
        for plugin, _ in pm.list_name_plugin():
            if plugin in broken:
                self._disable(plugin, f"a registration hook raised {broken[plugin]}")
            elif plugin in offers:
                self._accept(plugin, offers[plugin])

    def _disable(self, plugin: str, error: str, component: str | None = None) -> None:
        self.failures.append(PluginFailure(plugin, self.package_of(plugin)[0], error,
                                           component))
        if component is None:
            for entries in self._entries.values():
                for name in [n for n, e in entries.items() if e.plugin == plugin]:
                    del entries[name]
            if self.pm.has_plugin(plugin):
                self.pm.unregister(name=plugin)

    def package_of(self, plugin: str) -> tuple[str, str]:
        """(distribution, version) that provided ``plugin``."""
        return self._packages.get(plugin, ("unknown", ""))

    def _accept(self, plugin: str, offered: list[tuple[str, Any]]) -> None:
        package, version = self.package_of(plugin)
        accepted: dict[tuple[str, str], Entry] = {}
        for kind, cls in offered:
            problem = _class_problem(kind, cls)
            if problem:
                return self._disable(plugin, problem)
            other = self._entries[kind].get(cls.name) or accepted.get((kind, cls.name))
            if other is not None:
                return self._disable(plugin, f"{kind} {cls.name!r} is already registered by "
                                             f"{other.plugin!r} ({other.package})")
            component_problem = _options_problem(cls)
            if component_problem:
                self._disable(plugin, component_problem, component=cls.name)
                continue
            if kind == "attack" and getattr(cls, "library", None) is None:
                cls.library = package  # an attack that names no library is its package's
            accepted[(kind, cls.name)] = Entry(kind, cls.name, cls, plugin, package, version)
        for (kind, name), entry in accepted.items():
            self._entries[kind][name] = entry

    def register_commands(self, subparsers: Any) -> None:
        """Let every plugin add its subcommands (``robench_register_commands``); a plugin
        whose hook raises is disabled and recorded, the others keep theirs."""
        for impl in self.pm.hook.robench_register_commands.get_hookimpls():
            error = _call_contained(impl, subparsers)
            if error:
                self._disable(impl.plugin_name, f"robench_register_commands raised {error}")

    def names(self, kind: str) -> list[str]:
        """Sorted component names of one kind."""
        return sorted(self._entries[kind])

    def entry(self, kind: str, name: str) -> Entry:
        """The entry of ``name``; an unknown name raises with the closest match and the
        plugins that failed to load (one of them may have provided it)."""
        try:
            return self._entries[kind][name]
        except KeyError:
            raise PluginError(f"unknown {kind} {name!r}{did_you_mean(name, self._entries[kind])}"
                              f"{self._failure_hint(name)}; `robench plugins` lists the "
                              f"installed ones") from None

    def _failure_hint(self, name: str) -> str:
        failed = [f for f in self.failures if f.component in (None, name)]
        if not failed:
            return ""
        own = [f for f in failed if f.component == name
               or name.split(".")[0] == f.plugin.split(".")[-1]]
        shown = own or failed
        return "; " + "; ".join(str(f) for f in shown)

    def get(self, kind: str, name: str) -> type[Component]:
        """The component class registered as ``name``."""
        return self.entry(kind, name).cls

    def entries(self) -> list[Entry]:
        """All entries, sorted by kind then name."""
        return [self._entries[k][n] for k in KINDS for n in sorted(self._entries[k])]


def _call_contained(impl: Any, argument: Any) -> str | None:
    """Call a hook implementation with ``argument`` for each of its parameters; return
    the error it raised (any ``BaseException`` but ``KeyboardInterrupt``), or None."""
    try:
        impl.function(**{name: argument for name in impl.argnames})
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # a broken plugin is recorded, never fatal
        return _describe_error(err)
    return None


def _class_problem(kind: str, cls: Any) -> str | None:
    """Why ``cls`` cannot be registered as a ``kind`` at all (disables its plugin)."""
    base = KINDS[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return f"registered {cls!r} as a {kind}, but it is not a subclass of {base.__name__}"
    if not isinstance(cls.name, str) or not cls.name:
        return f"registered {cls.__name__} without a name"
    return None


def _options_problem(cls: type[Component]) -> str | None:
    """Why a component's ``Options`` or description is unusable (drops the component)."""
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        return f"its Options ({options!r}) is not a dataclass"
    try:
        cls.describe()
    except Exception as err:
        return f"it cannot be described ({_describe_error(err)})"
    return None


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


def _register(pm: pluggy.PluginManager, plugin: object, name: str,
              package: tuple[str, str], failures: list[PluginFailure]) -> bool:
    """Register one plugin, as pluggy's ``check_pending`` would have it: a plugin that
    implements an unknown ``robench_*`` hook (or a hook with unknown arguments) is
    refused and recorded. Returns whether it was registered."""
    try:
        if pm.register(plugin, name) is None:  # blocked
            return False
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        failures.append(PluginFailure(name, package[0], _describe_error(err)))
        return False
    known = [n for n in vars(hookspecs) if n.startswith("robench_")]
    unknown = sorted(c.name for c in pm.get_hookcallers(plugin) or () if not c.has_spec())
    if unknown:
        pm.unregister(plugin)
        failures.append(PluginFailure(name, package[0], "unknown hook " + ", ".join(
            f"{u!r}{did_you_mean(u, known)}" for u in unknown)))
        return False
    return True


def build_registry(*, autoload: bool | None = None,
                   plugins: Iterable[ModuleType | object] = (),
                   blocked: Iterable[str] | None = None) -> Registry:
    """Build a plugin manager with the built-ins, entry points and extra ``plugins``.

    ``autoload`` defaults to on unless ``ROBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set to a
    non-empty value; ``blocked`` (default: ``ROBENCH_BLOCK_PLUGINS``) names plugins not
    to load. ``plugins`` are extra modules/objects registered directly (tests use this
    to add a plugin through the public API).
    """
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    pm = pluggy.PluginManager("robench")
    pm.add_hookspecs(hookspecs)
    for name in blocked_from_env() if blocked is None else blocked:
        pm.set_blocked(name)
    packages: dict[str, tuple[str, str]] = {}
    failures: list[PluginFailure] = []
    builtin = ("robench", __version__)
    for module_name in DEFAULT_PLUGINS:
        if not pm.is_blocked(module_name):
            packages[module_name] = builtin
            _register(pm, importlib.import_module(module_name), module_name, builtin,
                      failures)
    if autoload:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.is_blocked(ep.name):
                continue
            package = (ep.dist.name, ep.dist.version) if ep.dist else ("unknown", "")
            packages[ep.name] = package
            try:
                plugin = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as err:  # SystemExit at import included
                failures.append(PluginFailure(ep.name, package[0], _describe_error(err)))
                continue
            _register(pm, plugin, ep.name, package, failures)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or repr(plugin)
        packages[name] = (_package_of_module(plugin) if isinstance(plugin, ModuleType)
                          else (type(plugin).__module__.split(".")[0], ""))
        _register(pm, plugin, name, packages[name], failures)
    return Registry(pm, packages, failures)


_cache: dict[tuple[bool, frozenset[str]], Registry] = {}


def get_registry() -> Registry:
    """The process-wide registry for the current autoload and block settings (built on
    first use)."""
    key = (not os.environ.get(DISABLE_AUTOLOAD_ENV), blocked_from_env())
    if key not in _cache:
        _cache[key] = build_registry(autoload=key[0], blocked=key[1])
    return _cache[key]
