"""The plugin host: built-ins, entry points, duplicates, broken plugins, light imports."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import types

import pytest
from conftest import REPO, fake_distribution

import robench
from robench import hookspecs
from robench.components import KINDS
from robench.plugins import build_registry


def test_every_hook_is_documented_with_when_and_how():
    hooks = [f for n, f in vars(hookspecs).items() if n.startswith("robench_register_")]
    assert {h.__name__ for h in hooks} == {f"robench_register_{k}s" for k in KINDS} | {
        "robench_register_commands"}
    for hook in hooks:
        doc = inspect.getdoc(hook) or ""
        how = "add_parser(" if hook.__name__.endswith("commands") else "register("
        assert "Called once" in doc and how in doc, hook.__name__


def test_builtins_provide_every_kind_with_docstrings():
    registry = build_registry(autoload=False)
    for kind in KINDS:
        assert registry.names(kind), f"no built-in {kind}"
    for entry in registry.entries():
        assert entry.package == "robench"
        assert (entry.cls.__doc__ or "").strip(), f"{entry.kind} {entry.name} has no docstring"


def test_entry_point_plugin_is_discovered(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "robench-example-plugin", {"example": "robench_example.hooks"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(REPO / "plugins" / "example-plugin"))
    registry = build_registry(autoload=True)
    entry = registry.entry("attack", "example.gaussian_noise")
    assert (entry.package, entry.version, entry.plugin) == ("robench-example-plugin", "0.1.0",
                                                            "example")
    assert entry.as_dict()["threat_model"] == "l2"
    assert not registry.failures
    # and the switch that gives a clean, built-ins-only host
    monkeypatch.setenv("ROBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "example.gaussian_noise" not in build_registry().names("attack")


def test_broken_plugin_is_reported_and_skipped(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "robench-broken", {"broken": "no_such_module_xyz.hooks"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = build_registry(autoload=True)
    (failure,) = registry.failures
    assert failure.package == "robench-broken" and "no_such_module_xyz" in failure.error
    assert "digits" in registry.names("dataset")


def test_plugin_whose_hook_raises_is_skipped():
    plugin = types.ModuleType("raising_plugin")

    @robench.hookimpl
    def robench_register_models(register):
        raise ValueError("cannot register")

    plugin.robench_register_models = robench_register_models
    registry = build_registry(autoload=False, plugins=[plugin])
    (failure,) = registry.failures
    assert failure.plugin == "raising_plugin" and "ValueError: cannot register" in failure.error
    assert "mlp" in registry.names("model")


def test_attack_without_a_library_is_labelled_with_its_package():
    plugin = types.ModuleType("unlabelled_plugin")

    class Unlabelled(robench.FixedBudgetAttack):
        """Returns its input."""

        name = "test.unlabelled"

        def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
            return x

    @robench.hookimpl
    def robench_register_attacks(register):
        register(Unlabelled)

    plugin.robench_register_attacks = robench_register_attacks
    registry = build_registry(autoload=False, plugins=[plugin])
    entry = registry.entry("attack", "test.unlabelled")
    assert Unlabelled.library == entry.package != "robench"
    assert registry.get("attack", "fooling_images").library == "robench"


def test_duplicate_name_disables_the_later_plugin_and_names_both():
    plugin = types.ModuleType("dup_plugin")

    class Digits2(robench.Dataset):
        """Same name as the built-in."""
        name = "digits"

    class Fresh(robench.Dataset):
        """A new name from the same plugin: dropped with it."""
        name = "dup.fresh"

    @robench.hookimpl
    def robench_register_datasets(register):
        register(Fresh)
        register(Digits2)

    plugin.robench_register_datasets = robench_register_datasets
    registry = build_registry(autoload=False, plugins=[plugin])
    (failure,) = registry.failures
    assert failure.plugin == "dup_plugin"
    assert "dataset 'digits' is already registered by 'robench_plugins.datasets' (robench)" \
        in failure.error
    assert registry.entry("dataset", "digits").plugin == "robench_plugins.datasets"
    assert "dup.fresh" not in registry.names("dataset")
    assert "mlp" in registry.names("model")


def test_unknown_component_suggests_close_name(registry):
    with pytest.raises(robench.PluginError, match="did you mean 'digits'"):
        registry.get("dataset", "digit")


def test_listing_and_validating_never_import_torch(tmp_path):
    code = (
        "import sys, robench.cli as c\n"
        "c.main(['plugins', '--json'])\n"
        f"c.main(['validate', {str(REPO / 'benchmarks' / 'quickstart.toml')!r}])\n"
        "heavy = [m for m in ('torch', 'foolbox', 'art', 'torchattacks', 'pandas') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"
    listed = json.loads(out.stdout[:out.stdout.index("\n]") + 2])
    kinds = {item["kind"] for item in listed}
    assert kinds == set(KINDS)
    for item in listed:
        assert {"kind", "name", "package", "version"} <= set(item)
        if item["kind"] == "attack":
            assert {"library", "threat_model"} <= set(item)
