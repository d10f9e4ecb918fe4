"""``sys.exit`` inside a plugin is that plugin's failure; Ctrl-C still ends the run.

An attack or a metric that calls ``sys.exit(0)`` must not end the run with status 0
(nor leave run.json ``running``): its unit or metric is recorded as failed and the run
exits with 1. A KeyboardInterrupt ends the run with 130 and status ``interrupted``.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

import robench
from robench import FixedBudgetAttack, Metric
from robench.cli import main

EXPERIMENT = """
    [experiment]
    name = "exits"
    seeds = [0]
    device = "cpu"

    [data]
    dataset = "test.blobs"

    [training]
    epochs = 1
    batch_size = 32

    [[models]]
    name = "mlp"
    hidden = [4]

    [defenses]
    none = []

    [[attacks]]
    name = "noise"
    attack = "test.sign_noise"
    epsilons = [0.1]

    [[attacks]]
    name = "culprit"
    attack = "{attack}"
    epsilons = [0.1]

    [metrics]
    use = [{metrics}]

    [report]
    formats = []
"""


class Exits(FixedBudgetAttack):
    """Calls ``sys.exit(0)`` when asked to attack."""

    name = "test.exits"

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        sys.exit(0)


class Interrupts(FixedBudgetAttack):
    """Raises KeyboardInterrupt when asked to attack (Ctrl-C during the attack)."""

    name = "test.interrupts"

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        raise KeyboardInterrupt


class ExitingMetric(Metric):
    """Raises ``SystemExit(0)`` on the results."""

    name = "test.exiting_metric"

    def from_results(self, results):
        raise SystemExit(0)


@robench.hookimpl
def robench_register_attacks(register):
    register(Exits)
    register(Interrupts)


@robench.hookimpl
def robench_register_metrics(register):
    register(ExitingMetric)


@pytest.fixture
def cli_registry(monkeypatch):
    import plugin_fixtures

    import robench.plugins

    registry = robench.plugins.build_registry(
        autoload=False, plugins=[plugin_fixtures, sys.modules[__name__]])
    key = (not robench.plugins.os.environ.get(robench.plugins.DISABLE_AUTOLOAD_ENV),
           robench.plugins.blocked_from_env())
    monkeypatch.setitem(robench.plugins._cache, key, registry)  # what get_registry returns
    return registry


def _run(tmp_path, attack: str, metrics: str = "") -> tuple[int, dict]:
    path = tmp_path / "exp.toml"
    path.write_text(textwrap.dedent(EXPERIMENT.format(attack=attack, metrics=metrics)))
    out = tmp_path / "run"
    code = main(["run", str(path), "--out", str(out), "--no-progress", "--no-report"])
    return code, json.loads((out / "run.json").read_text())


def test_sys_exit_in_an_attack_fails_that_unit_only(tmp_path, cli_registry):
    code, record = _run(tmp_path, "test.exits")
    assert code == 1
    assert record["status"] == "failed"
    units = {u["attack"]: u for u in record["units"].values()}
    assert units["noise"]["status"] == "done"
    assert units["culprit"]["status"] == "failed"
    assert units["culprit"]["error"].startswith("SystemExit")


def test_sys_exit_in_a_metric_fails_the_run(tmp_path, cli_registry):
    code, record = _run(tmp_path, "test.sign_noise", metrics='"test.exiting_metric"')
    assert code == 1
    assert record["status"] == "failed"
    assert "SystemExit" in record["metric_errors"]["test.exiting_metric"]


def test_keyboard_interrupt_in_an_attack_ends_the_run_as_interrupted(tmp_path, cli_registry):
    code, record = _run(tmp_path, "test.interrupts")
    assert code == 130
    assert record["status"] == "interrupted"
