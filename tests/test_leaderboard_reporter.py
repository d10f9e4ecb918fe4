"""The leaderboard section and leaderboard.json of leaderboard-shaped runs (one budget
per threat model), and nothing for eps sweeps."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

import robench
from robench.leaderboard import LEADERBOARD_FILE, leaderboard_budgets, summary

BASE = {"dataset": "d", "model": "m", "defense": "none", "seed": 0, "source": "data",
        "library": "lib", "library_version": "1", "correct_clean": True}


def frame(rows):
    return pd.DataFrame([{**BASE, **r} for r in rows])


def test_budgets_one_per_threat_model_or_none():
    single = frame([{"attack": "a", "threat_model": "linf", "epsilon": 0.03, "sample": 0},
                    {"attack": "b", "threat_model": "linf", "epsilon": 0.03, "sample": 0},
                    {"attack": "c", "threat_model": "l2", "epsilon": 0.5, "sample": 0},
                    {"attack": "u", "threat_model": "unbounded", "epsilon": 1.0, "sample": 0},
                    {"attack": "u", "threat_model": "unbounded", "epsilon": 2.0, "sample": 0}])
    assert leaderboard_budgets(single) == {"linf": 0.03, "l2": 0.5}
    sweep = pd.concat([single, frame([{"attack": "b", "threat_model": "linf",
                                       "epsilon": 0.06, "sample": 0}])])
    assert leaderboard_budgets(sweep) is None
    assert leaderboard_budgets(single[single["threat_model"] == "unbounded"]) is None


def test_each_threat_model_is_its_own_ensemble():
    rows = [{"attack": "a", "threat_model": "linf", "epsilon": 0.03, "sample": s,
             "correct_adv": s != 0} for s in range(4)]
    rows += [{"attack": "b", "threat_model": "linf", "epsilon": 0.03, "sample": s,
              "correct_adv": s != 1} for s in range(4)]
    rows += [{"attack": "c", "threat_model": "l2", "epsilon": 0.5, "sample": s,
              "correct_adv": s == 3} for s in range(4)]
    entries = {e["threat_model"]: e for e in summary(frame(rows))}
    assert entries["linf"]["robust_accuracy"] == 0.5      # samples 2 and 3
    assert entries["l2"]["robust_accuracy"] == 0.25       # sample 3
    assert sorted(entries["linf"]["attacks"]) == ["a", "b"]
    assert list(entries["l2"]["attacks"]) == ["c"] and entries["l2"]["epsilon"] == 0.5


@pytest.fixture
def net_and_data():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    return net, torch.rand(40, 4), torch.randint(0, 3, (40,))


ATTACKS = [{"name": "fgsm", "attack": "torchattacks.FGSM"},
           {"name": "pgd", "attack": "torchattacks.PGD", "steps": 3, "alpha": 0.05}]


def test_single_budget_run_writes_the_json_and_the_table(tmp_path, registry, net_and_data):
    run = robench.evaluate(*net_and_data, ATTACKS, [0.2], out=tmp_path, device="cpu",
                           report=("md",), registry=registry)
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
    rows = [{"attack": a, "threat_model": "linf", "epsilon": 0.03, "sample": s,
             "correct_adv": True, "model": m}
            for m in ("m1", "m2") for a in ("a", "b") for s in range(3)
            if not (m == "m2" and a == "b")]
    entries = {e["model"]: e for e in summary(frame(rows))}
    assert entries["m1"]["robust_accuracy"] == 1.0 and entries["m1"]["missing_attacks"] == []
    assert entries["m2"]["robust_accuracy"] is None
    assert entries["m2"]["missing_attacks"] == ["b"]


def test_the_section_says_n_a_for_a_configuration_missing_an_attack():
    from types import SimpleNamespace

    from robench_plugins.reporters.leaderboard import Leaderboard

    rows = [{"attack": a, "threat_model": "linf", "epsilon": 8 / 255, "sample": s,
             "correct_adv": s == 0, "model": m}
            for m in ("m1", "m2") for a in ("a", "b") for s in range(4)
            if not (m == "m2" and a == "b")]

    class Store:
        results = frame(rows)

        def read_run(self):
            return {"versions": {}, "experiment": {"config": {}}}

        def record(self):
            return SimpleNamespace(data={"eps_scale": 255})

    (section,) = Leaderboard().sections(Store())
    table = section.tables[0].set_index("model")
    assert table.loc["m1", "robust accuracy"] == "25.0%"
    assert table.loc["m2", "robust accuracy"] == "n/a"
    assert table.loc["m1", "ε"] == "8/255"
    assert "n/a" in section.text
