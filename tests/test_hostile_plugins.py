"""Hostile and broken plugins: the host stays up, disables the offender and says why.

Each plugin here is installed the way a real one is (a distribution declaring a
``robench`` entry point) or registered through the public API; every failure must be
recorded in ``Registry.failures`` with the plugin's name, the built-ins must keep
working, and asking for a component the failed plugin would have provided must name it.
"""

from __future__ import annotations

import dataclasses
import textwrap
import types

import pytest
from conftest import SMOKE, fake_distribution

import robench
from robench import plugins as host
from robench.cli import main
from robench.plugins import build_registry


@pytest.fixture
def install(tmp_path, monkeypatch):
    """Install a plugin module (source text) under an entry point; returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(host, "_cache", {})  # the CLI's registry must see this install
    monkeypatch.delenv(host.DISABLE_AUTOLOAD_ENV, raising=False)
    count = iter(range(1000))

    def install(source: str, name: str = "hostile") -> str:
        module = f"{name}_{next(count)}_{id(tmp_path)}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        fake_distribution(tmp_path / module, f"robench-{name}", {name: module})
        monkeypatch.syspath_prepend(str(tmp_path / module))
        return name
    return install


def only_failure(registry, plugin: str):
    (failure,) = [f for f in registry.failures if f.plugin == plugin]
    assert failure.package == f"robench-{plugin}"
    return failure


def assert_builtins_work(registry):
    assert {"digits", "mlp", "weight_decay", "torchattacks.PGD", "auc", "local"} <= {
        e.name for e in registry.entries()}


def test_import_error_is_recorded(install):
    install("import no_such_module_anywhere\n", "importer")
    registry = build_registry(autoload=True)
    assert "no_such_module_anywhere" in only_failure(registry, "importer").error
    assert_builtins_work(registry)


@pytest.mark.parametrize("statement, shown", [("raise SystemExit(3)", "SystemExit: 3"),
                                              ("import sys; sys.exit(0)", "SystemExit"),
                                              ("raise MemoryError('boom')", "MemoryError")])
def test_exit_or_base_exception_at_import_is_contained(install, statement, shown):
    install(statement + "\n", "exiter")
    registry = build_registry(autoload=True)
    assert only_failure(registry, "exiter").error.startswith(shown)
    assert_builtins_work(registry)


def test_keyboard_interrupt_at_import_still_propagates(install):
    install("raise KeyboardInterrupt\n", "interrupter")
    with pytest.raises(KeyboardInterrupt):
        build_registry(autoload=True)


HOOK_RAISES = """
    import robench

    class Quiet(robench.Metric):
        '''A metric from a plugin whose other hook raises.'''
        name = "quiet.metric"

    @robench.hookimpl
    def robench_register_metrics(register):
        register(Quiet)

    @robench.hookimpl
    def robench_register_attacks(register):
        {statement}
"""


@pytest.mark.parametrize("statement", ["raise RuntimeError('nope')", "raise SystemExit(4)",
                                       "import sys; sys.exit()"])
def test_raising_hook_disables_the_plugin_as_a_whole(install, statement):
    install(HOOK_RAISES.format(statement=statement), "raiser")
    registry = build_registry(autoload=True)
    failure = only_failure(registry, "raiser")
    assert "a registration hook raised" in failure.error
    assert "quiet.metric" not in registry.names("metric")
    assert not registry.pm.has_plugin("raiser")
    assert_builtins_work(registry)


def test_misspelled_hook_disables_the_plugin_and_names_the_hook(install):
    install("""
        import robench

        class Typo(robench.Attack):
            '''Never registered: its plugin misspells a hook.'''
            name = "typo.attack"

        @robench.hookimpl
        def robench_register_attack(register):
            register(Typo)
    """, "typo")
    registry = build_registry(autoload=True)
    error = only_failure(registry, "typo").error
    assert "unknown hook 'robench_register_attack' (did you mean " \
           "'robench_register_attacks'?)" in error
    with pytest.raises(robench.PluginError, match=r"unknown attack 'typo.attack'.*plugin "
                                                  r"'typo' \(robench-typo\) disabled: "
                                                  r"unknown hook"):
        registry.get("attack", "typo.attack")


def test_duplicate_disables_only_the_later_plugin(install):
    install("""
        import robench

        class First(robench.Dataset):
            '''The first to claim the name keeps it.'''
            name = "shared.name"

        @robench.hookimpl
        def robench_register_datasets(register):
            register(First)
    """, "first")
    install("""
        import robench

        class Second(robench.Dataset):
            '''Claims a taken name.'''
            name = "shared.name"

        class Own(robench.Dataset):
            '''Goes down with its plugin.'''
            name = "second.own"

        @robench.hookimpl
        def robench_register_datasets(register):
            register(Own)
            register(Second)
    """, "second")
    registry = build_registry(autoload=True)
    winner = registry.entry("dataset", "shared.name").plugin
    (failure,) = registry.failures
    assert {winner, failure.plugin} == {"first", "second"}
    assert f"'shared.name' is already registered by {winner!r} (robench-{winner})" \
        in failure.error
    assert ("second.own" in registry.names("dataset")) == (winner == "second")


def test_builtins_win_over_a_plugin_claiming_their_names(install):
    install("""
        import robench

        class Digits(robench.Dataset):
            '''Not the real digits.'''
            name = "digits"

        @robench.hookimpl
        def robench_register_datasets(register):
            register(Digits)
    """, "impostor")
    registry = build_registry(autoload=True)
    assert registry.entry("dataset", "digits").plugin == "robench_plugins.datasets"
    assert "already registered by 'robench_plugins.datasets'" in only_failure(
        registry, "impostor").error


BAD_OPTIONS = """
    import robench

    class NotADataclass:
        steps = 3

    class BadOptions(robench.Attack):
        '''Its Options is a plain class.'''
        name = "bad.options"
        Options = NotADataclass

    class Fine(robench.Metric):
        '''Registered by the same plugin, unaffected.'''
        name = "bad.fine"

    @robench.hookimpl
    def robench_register_attacks(register):
        register(BadOptions)

    @robench.hookimpl
    def robench_register_metrics(register):
        register(Fine)
"""


def test_non_dataclass_options_drop_that_component_only(install, capsys):
    install(BAD_OPTIONS, "bad")
    registry = build_registry(autoload=True)
    failure = only_failure(registry, "bad")
    assert failure.component == "bad.options" and "is not a dataclass" in failure.error
    assert "bad.fine" in registry.names("metric")
    assert "bad.options" not in registry.names("attack")
    assert main(["plugins"]) == 0
    captured = capsys.readouterr()
    assert "bad.fine" in captured.out
    assert "component 'bad.options' of plugin 'bad' (robench-bad) disabled" in captured.err


def test_a_failed_plugin_is_named_when_validate_asks_for_its_component(install, write_toml,
                                                                      capsys):
    install("raise SystemExit(3)\n", "needed")
    text = SMOKE.replace('"test.sign_noise"', '"needed.attack"').replace("repeats = 2", "")
    text = text.replace('"test.blobs"', '"digits"').replace('["test.row_count"]', "[]")
    path = write_toml(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "attacks[0].attack: unknown attack 'needed.attack'" in err
    assert "plugin 'needed' (robench-needed) disabled: SystemExit: 3" in err


def test_plugins_are_blocked_one_by_one(install, monkeypatch, capsys):
    install(BAD_OPTIONS, "bad")
    assert "bad.fine" in build_registry(autoload=True).names("metric")
    assert "bad.fine" not in build_registry(autoload=True, blocked=["bad"]).names("metric")
    monkeypatch.setenv(host.BLOCK_ENV, "other, bad")
    registry = build_registry(autoload=True)
    assert "bad.fine" not in registry.names("metric") and not registry.failures
    monkeypatch.delenv(host.BLOCK_ENV)
    assert main(["-p", "no:bad", "plugins", "--kind", "metric"]) == 0
    captured = capsys.readouterr()
    assert "bad.fine" not in captured.out and captured.err == ""
    assert main(["plugins", "--kind", "metric"]) == 0  # the block lasted one command
    assert "bad.fine" in capsys.readouterr().out
    assert main(["-p", "bad", "plugins"]) == 2
    assert "expected -p no:NAME" in capsys.readouterr().err


def test_a_builtin_plugin_can_be_blocked():
    registry = build_registry(autoload=False, blocked=["robench_plugins.executors"])
    assert registry.names("executor") == [] and "mlp" in registry.names("model")


COMMANDS = """
    import robench

    @robench.hookimpl
    def robench_register_commands(subparsers):
        parser = subparsers.add_parser("{name}", help="a plugin command")
        parser.add_argument("--times", type=int, default=1)
        parser.set_defaults(func=lambda args: print("hi " * args.times) or {code})
"""


def test_a_plugin_adds_a_command(install, capsys):
    install(COMMANDS.format(name="hello", code=0), "greeter")
    assert main(["hello", "--times", "2"]) == 0
    assert capsys.readouterr().out.strip() == "hi hi"


def test_a_plugin_cannot_replace_a_command(install, capsys):
    install(COMMANDS.format(name="validate", code=5), "hijacker")
    assert main(["plugins", "--kind", "executor"]) == 0
    assert "plugin 'hijacker' (robench-hijacker) disabled: robench_register_commands " \
           "raised ValueError: command 'validate' already exists" in capsys.readouterr().err


def test_a_raising_command_hook_disables_only_that_plugin():
    plugin = types.ModuleType("command_raiser")
    plugin.robench_register_commands = robench.hookimpl(
        lambda subparsers: (_ for _ in ()).throw(SystemExit(9)))

    class Metric(robench.Metric):
        """Goes down with its plugin."""
        name = "command_raiser.metric"

    plugin.robench_register_metrics = robench.hookimpl(lambda register: register(Metric))
    registry = build_registry(autoload=False, plugins=[plugin])
    assert "command_raiser.metric" in registry.names("metric")
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    registry.register_commands(sub)
    assert "doctor" in sub.choices
    (failure,) = registry.failures
    assert failure.plugin == "command_raiser" and "SystemExit: 9" in failure.error
    assert "command_raiser.metric" not in registry.names("metric")


def test_invalid_registrations_disable_the_plugin():
    @dataclasses.dataclass(frozen=True)
    class Opts:
        k: int = 1

    class Nameless(robench.Metric):
        """No name."""

    plugin = types.ModuleType("nameless_plugin")
    plugin.robench_register_metrics = robench.hookimpl(lambda register: register(Nameless))
    other = types.ModuleType("wrong_kind_plugin")
    other.robench_register_attacks = robench.hookimpl(lambda register: register(Opts))
    registry = build_registry(autoload=False, plugins=[plugin, other])
    errors = {f.plugin: f.error for f in registry.failures}
    assert "without a name" in errors["nameless_plugin"]
    assert "not a subclass of Attack" in errors["wrong_kind_plugin"]
    assert_builtins_work(registry)


def test_a_hook_with_unknown_arguments_is_refused():
    plugin = types.ModuleType("wrong_args")
    plugin.robench_register_models = robench.hookimpl(lambda registrar: None)
    registry = build_registry(autoload=False, plugins=[plugin])
    (failure,) = registry.failures
    assert failure.plugin == "wrong_args" and "registrar" in failure.error
