"""A leaderboard section and leaderboard.json of leaderboard-shaped runs (one budget
per threat model), and nothing for eps sweeps."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

import robench
from robench.leaderboard import LEADERBOARD_FILE, leaderboard_budgets, summary
from robench.record import RunRecord

CELLS = ("m1--none--s0", "m2--none--s0")


def record(attacks, units=(), use=("clean_accuracy", "worst_case")):
    """A run record of cells m1 and m2 with ``attacks`` as {label: (threat model,
    epsilons)} and every (cell, attack) unit done except those in ``units`` (failed)."""
    return RunRecord.from_dict({
        "experiment": {"name": "x", "file": "x.toml", "config_hash": "h",
                       "config": {"metrics": {"use": list(use)}}},
        "robench_version": "0", "data": {"eps_scale": 255},
        "attacks": {a: {"component": "c", "library": "lib", "threat_model": tm,
                        "epsilons": eps} for a, (tm, eps) in attacks.items()},
        "cells": {c: {"cell": {"dataset": "d", "model": c.split("--")[0],
                               "defense": "none", "seed": 0, "cell": c},
                      "key": c, "status": "done"} for c in CELLS},
        "units": {f"{c}/{a}": {"cell": c, "attack": a, "key": "k", "library": "lib",
                               "library_version": "1",
                               "status": "failed" if (c, a) in units else "done"}
                  for c in CELLS for a in attacks}})


def rows(*specs):
    """Metric rows (metric, cell, threat model, eps, value, note) in the unconditional
    convention, with n = 4."""
    return pd.DataFrame([{"metric": m, "cell": c, "attack": "worst_case",
                          "threat_model": tm, "epsilon": eps, "value": v, "n": 4,
                          "convention": "unconditional", "note": note}
                         for m, c, tm, eps, v, note in specs])


def test_budgets_one_per_threat_model_or_none():
    single = {"a": ("linf", [0.03]), "b": ("linf", [0.03]), "c": ("l2", [0.5]),
              "u": ("unbounded", [1.0, 2.0])}
    assert leaderboard_budgets(record(single)) == {"l2": 0.5, "linf": 0.03}
    assert leaderboard_budgets(record({**single, "b": ("linf", [0.03, 0.06])})) is None
    assert leaderboard_budgets(record({**single, "b": ("linf", [0.06])})) is None
    assert leaderboard_budgets(record({"u": ("unbounded", [1.0, 2.0])})) is None


def test_each_threat_model_is_its_own_ensemble():
    attacks = {"a": ("linf", [0.03]), "b": ("linf", [0.03]), "c": ("l2", [0.5])}
    metrics = rows(("worst_case_accuracy", CELLS[0], "linf", 0.03, 0.5, "attacks: a,b"),
                   ("worst_case_accuracy", CELLS[0], "l2", 0.5, 0.25, "attacks: c"),
                   ("worst_case_accuracy", CELLS[0], "l2", 0.7, 0.0, "attacks: c"))
    entries = {e["threat_model"]: e for e in summary(metrics, record(attacks))
               if e["model"] == "m1"}
    assert entries["linf"]["robust_accuracy"] == 0.5
    assert entries["l2"]["robust_accuracy"] == 0.25 and entries["l2"]["epsilon"] == 0.5
    assert sorted(entries["linf"]["attacks"]) == ["a", "b"]
    assert list(entries["l2"]["attacks"]) == ["c"]


@pytest.fixture
def net_and_data():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    return net, torch.rand(40, 4), torch.randint(0, 3, (40,))


ATTACKS = [{"name": "fgsm", "attack": "torchattacks.FGSM"},
           {"name": "pgd", "attack": "torchattacks.PGD", "steps": 3, "alpha": 0.05}]


def test_single_budget_run_writes_the_json_and_the_table(tmp_path, registry, net_and_data):
    run = robench.evaluate(*net_and_data, ATTACKS, [0.2], out=tmp_path, device="cpu",
                           report=("md",), registry=registry,
                           metrics=["clean_accuracy", "worst_case"])
    (entry,) = json.loads((tmp_path / LEADERBOARD_FILE).read_text())
    results = run.results
    per_sample = results.groupby("sample").agg(clean=("correct_clean", "all"),
                                               adv=("correct_adv", "all"))
    robust = (per_sample["clean"] & per_sample["adv"]).mean()
    assert entry["robust_accuracy"] == pytest.approx(robust)
    assert entry["clean_accuracy"] == pytest.approx(per_sample["clean"].mean())
    assert entry["samples"] == 40 and entry["threat_model"] == "linf"
    assert entry["attacks"]["pgd"]["settings"]["steps"] == 3
    report = (tmp_path / "report.md").read_text()
    section = report.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    assert f"{100 * robust:.1f}%" in section
    assert f"{100 * per_sample['clean'].mean():.1f}%" in section
    assert f"`{LEADERBOARD_FILE}`" in section


def test_a_sweep_gets_neither(tmp_path, registry, net_and_data):
    robench.evaluate(*net_and_data, ATTACKS, [0.1, 0.2], out=tmp_path, device="cpu",
                     report=("md",), registry=registry)
    assert not (tmp_path / LEADERBOARD_FILE).exists()
    assert "## Leaderboard" not in (tmp_path / "report.md").read_text()


def test_an_attack_without_results_leaves_no_robust_accuracy():
    attacks = {"a": ("linf", [8 / 255]), "b": ("linf", [8 / 255])}
    metrics = rows(("worst_case_accuracy", CELLS[0], "linf", 8 / 255, 1.0, "attacks: a,b"),
                   ("worst_case_accuracy", CELLS[1], "linf", 8 / 255, 1.0, "attacks: a"))
    entries = {e["model"]: e for e in summary(metrics, record(attacks, {(CELLS[1], "b")}))}
    assert entries["m1"]["robust_accuracy"] == 1.0 and entries["m1"]["missing_attacks"] == []
    assert entries["m2"]["robust_accuracy"] is None
    assert entries["m2"]["missing_attacks"] == ["b"]


class Store:
    """What a reporter sees of a run: its metric rows and its record."""

    def __init__(self, metrics, record):
        self.metrics, self._record = metrics, record

    def record(self):
        return self._record


def test_the_section_says_n_a_for_a_configuration_missing_an_attack():
    from robench_plugins.reporters.leaderboard import Leaderboard

    attacks = {"a": ("linf", [8 / 255]), "b": ("linf", [8 / 255])}
    metrics = rows(("worst_case_accuracy", CELLS[0], "linf", 8 / 255, 0.25, "attacks: a,b"),
                   ("worst_case_accuracy", CELLS[1], "linf", 8 / 255, 0.5, "attacks: a"))
    (section,) = Leaderboard().sections(Store(metrics, record(attacks, {(CELLS[1], "b")})))
    table = section.tables[0].set_index("model")
    assert table.loc["m1", "robust accuracy"] == "25.0%"
    assert table.loc["m2", "robust accuracy"] == "n/a"
    assert table.loc["m1", "ε"] == "8/255"
    assert "n/a" in section.text


def test_the_section_names_a_metric_the_run_did_not_use():
    from robench_plugins.reporters.leaderboard import Leaderboard

    attacks = {"a": ("linf", [8 / 255]), "b": ("linf", [8 / 255])}
    (section,) = Leaderboard().sections(Store(rows(), record(attacks, use=())))
    assert set(section.tables[0]["robust accuracy"]) == {"n/a"}
    assert set(section.tables[0]["clean accuracy"]) == {"n/a"}
    assert "worst_case metric is not in the run's [metrics] use" in section.text
