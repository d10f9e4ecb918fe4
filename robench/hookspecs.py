"""The hooks a robench plugin implements: the plugin author's reference.

The component hooks are register-callbacks (the style of ``llm`` and ``datasette``):
robench calls each once, when the plugin manager is first built, with a ``register``
function; the plugin calls ``register(ComponentClass)`` once per component it provides.
A component's ``name`` must be unique within its kind across all installed plugins: a
plugin offering a name that a built-in or an earlier plugin holds is disabled, and
``robench plugins`` names it. ``robench_register_commands`` adds subcommands to the
command line. Return values are ignored. A plugin defining a ``robench_*`` hook that is
not listed here (a misspelling) is disabled, as is one whose hook raises.

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
    class; a name another plugin already registered disables this plugin.
    """


@hookspec
def robench_register_models(register):
    """Register model factories (subclasses of :class:`robench.Model`).

    Called once when the plugin manager is built; ``register(cls)`` adds one class.
    A name another plugin already registered disables this plugin.
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


@hookspec
def robench_register_commands(subparsers):
    """Add subcommands to the ``robench`` command line (``llm``'s ``register_commands``
    pattern, on :mod:`argparse`).

    Called once when the command line is built, before its arguments are parsed, with
    the ``argparse`` sub-parsers action of the ``robench`` parser. Add one parser per
    command and give it a ``func`` default: a callable taking the parsed
    :class:`argparse.Namespace` and returning the exit status::

        @hookimpl
        def robench_register_commands(subparsers):
            parser = subparsers.add_parser("hello", help="say hello")
            parser.add_argument("--name", default="world")
            parser.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)

    ``func`` raises :class:`robench.RobenchError` for bad input (printed as one line,
    exit 2). Hook modules stay light: import heavy libraries inside ``func``, since
    building the parser (even for ``--help``) calls this hook. The built-in ``doctor``
    command is registered this way; a command name already taken is an error that
    disables the plugin.
    """
