"""The hooks a robench plugin implements: the plugin author's reference.

Every hook is a register-callback (the style of ``llm`` and ``datasette``): robench
calls it once, when the plugin manager is first built, with a ``register`` function; the
plugin calls ``register(ComponentClass)`` once per component it provides. A component's
``name`` must be unique within its kind across all installed plugins; a duplicate is an
error that names both providers. Return values are ignored.

Implement hooks with :data:`robench.hookimpl`::

    from robench import Attack, hookimpl

    class MyAttack(Attack):
        '''One line summary shown by ``robench plugins``.'''
        name = "my_attack"

    @hookimpl
    def robench_register_attacks(register):
        register(MyAttack)

and expose the module through the ``robench`` entry-point group of your package::

    [options.entry_points]
    robench =
        my_plugin = my_plugin.hooks

Hook modules must import neither torch nor an attack library at import time: robench
imports every plugin to list components, and listing must stay instant.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("robench")


@hookspec
def robench_register_datasets(register):
    """Register dataset components (subclasses of :class:`robench.Dataset`).

    Called once when the plugin manager is built. ``register(cls)`` adds one component
    class; it raises :class:`robench.PluginError` when another plugin already registered
    a dataset of the same name.
    """


@hookspec
def robench_register_models(register):
    """Register model factories (subclasses of :class:`robench.Model`).

    Called once when the plugin manager is built; ``register(cls)`` adds one class.
    Duplicate names are an error naming both providers.
    """


@hookspec
def robench_register_defenses(register):
    """Register defenses (subclasses of :class:`robench.Defense`).

    Called once when the plugin manager is built; ``register(cls)`` adds one class.
    Defenses are stacked in experiment files, so each should change one thing.
    """


@hookspec
def robench_register_attacks(register):
    """Register attacks (subclasses of :class:`robench.Attack`).

    Called once when the plugin manager is built; ``register(cls)`` adds one class. Names
    of attacks wrapping a library are ``<library>.<Attack>`` (``foolbox.LinfPGD``). The
    class must declare ``threat_model`` and ``library`` without importing the library.
    """


@hookspec
def robench_register_metrics(register):
    """Register metrics (subclasses of :class:`robench.Metric`).

    Called once when the plugin manager is built; ``register(cls)`` adds one class.
    """


@hookspec
def robench_register_reporters(register):
    """Register report section providers (subclasses of :class:`robench.Reporter`).

    Called once when the plugin manager is built; ``register(cls)`` adds one class. Every
    registered reporter contributes sections to every report, ordered by section order.
    """


@hookspec
def robench_register_executors(register):
    """Register executors (subclasses of :class:`robench.Executor`) that run cells.

    Called once when the plugin manager is built; ``register(cls)`` adds one class. The
    experiment file's ``[experiment] executor`` key picks one (default ``local``).
    """
