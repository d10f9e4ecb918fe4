"""The AttackBench optimality score against hand-computed tables and against the curves
of the per-row attack outcomes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import robench
from robench_plugins.metrics.optimality import Optimality, optimality

BASE = {"dataset": "d", "model": "m", "defense": "none", "seed": 0, "cell": "m--none--0",
        "threat_model": "linf", "source": "data", "target": np.nan}


def rows(attack, sample, correct_clean, sweep, threat_model="linf"):
    """Result rows of one attack on one sample: ``sweep`` maps eps -> distance of a
    successful adversarial, or None when the attack failed at that eps."""
    return [{**BASE, "attack": attack, "threat_model": threat_model, "sample": sample,
             "epsilon": eps, "correct_clean": correct_clean,
             "success": dist is not None or not correct_clean,
             "correct_adv": dist is None and correct_clean,
             "distance": eps if dist is None else dist}
            for eps, dist in sweep.items()]


def hand_table():
    """Two attacks, four samples; b sweeps further (to 0.4) than a (to 0.3), so E = 0.3.

    sample 0: a breaks it at distance 0.2, b at 0.1           -> best 0.1
    sample 1: a at 0.08, b only at 0.4 (beyond E: counts 0.3) -> best 0.08
    sample 2: neither breaks it                                -> best inf
    sample 3: misclassified when clean                         -> distance 0 for both
    """
    fail = None
    return pd.DataFrame(
        rows("a", 0, True, {0.1: fail, 0.2: 0.2, 0.3: 0.25})
        + rows("b", 0, True, {0.1: 0.1, 0.2: 0.1, 0.3: 0.1, 0.4: 0.1})
        + rows("a", 1, True, {0.1: 0.08, 0.2: 0.08, 0.3: 0.08})
        + rows("b", 1, True, {0.1: fail, 0.2: fail, 0.3: fail, 0.4: 0.4})
        + rows("a", 2, True, {0.1: fail, 0.2: fail, 0.3: fail})
        + rows("b", 2, True, {0.1: fail, 0.2: fail, 0.3: fail, 0.4: fail})
        + rows("a", 3, False, {0.1: 0.0, 0.2: 0.0, 0.3: 0.0})
        + rows("b", 3, False, {0.1: 0.0, 0.2: 0.0, 0.3: 0.0, 0.4: 0.0}))


def test_hand_computed_scores():
    # smallest budget at which each attack broke each sample (3: misclassified -> 0):
    #   a: 0.2, 0.1, inf, 0    b: 0.1, 0.4, inf, 0    best: 0.1, 0.1, inf, 0
    # shared grid 0.1, 0.2, 0.3 (trapezoid weights 0.05, 0.1, 0.05); fraction d > eps:
    #   a: 2/4, 1/4, 1/4    b: 2/4, 2/4, 2/4    best: 1/4, 1/4, 1/4    clean: 3/4
    # area(clean - best) = 0.2 * 2/4 = 0.1
    # a: area(a - best) = 0.05 * 1/4 = 0.0125          -> 1 - 0.0125 / 0.1 = 7/8
    # b: area(b - best) = 0.2 * 1/4 = 0.05             -> 1 - 0.05 / 0.1 = 1/2
    out = optimality(hand_table()).set_index("attack")
    assert out.loc["a", "value"] == pytest.approx(7 / 8)
    assert out.loc["b", "value"] == pytest.approx(1 / 2)
    assert (out["metric"] == "optimality").all()
    assert (out["eps_min"] == 0.1).all() and (out["eps_max"] == 0.3).all()
    assert (out["n_eps"] == 3).all() and (out["n"] == 4).all()
    assert "a,b" in out.loc["a", "note"]


def test_a_single_budget_compares_the_values_at_it():
    # one budget, four clean-correct samples: a breaks sample 0, b breaks 0 and 1
    # clean 1, best 2/4 -> room 1/2; a: 3/4 - 2/4 = 1/4 -> 1/2; b: 0 -> 1
    frame = pd.DataFrame(
        [r for s in range(4) for r in rows("a", s, True, {0.03: 0.03 if s == 0 else None})]
        + [r for s in range(4) for r in rows("b", s, True, {0.03: 0.02 if s < 2 else None})])
    out = optimality(frame).set_index("attack")["value"]
    assert out["a"] == pytest.approx(0.5) and out["b"] == pytest.approx(1.0)


def test_per_sample_budgets_against_the_best():
    out = optimality(hand_table(), per_sample=True)
    samples = out[out["metric"] == "broken_at"].set_index(["attack", "sample"])
    assert samples.loc[("a", 0), "value"] == 0.2 and samples.loc[("b", 0), "value"] == 0.1
    assert samples.loc[("a", 1), "value"] == 0.1 and samples.loc[("b", 1), "value"] == 0.4
    assert math.isinf(samples.loc[("a", 2), "value"])
    assert samples.loc[("a", 3), "value"] == 0.0
    assert samples.xs(0, level="sample")["best_broken_at"].tolist() == [0.1, 0.1]
    assert samples.xs(1, level="sample")["best_broken_at"].tolist() == [0.1, 0.1]


def from_flags(frame):
    """Optimality from the per-row outcomes: an input counts as broken by an attack at a
    budget when the attack succeeded at that budget or a smaller one."""
    broken = frame.pivot_table(index=["attack", "sample"], columns="epsilon",
                               values="success", aggfunc="any")
    broken = broken.dropna(axis=1).sort_index(axis=1).astype(bool).cummax(axis=1)
    grid = broken.columns.to_numpy()
    clean = frame.groupby("sample")["correct_clean"].all()
    correct = clean.reindex(broken.index.get_level_values("sample")).to_numpy()[:, None]
    robust = (~broken & correct).astype(float)
    curves = robust.groupby(level="attack").mean()
    worst = robust.groupby(level="sample").min().mean()
    room = np.trapezoid(clean.mean() - worst, grid)
    return {a: 1 - np.trapezoid(curves.loc[a] - worst, grid) / room for a in curves.index}


def test_matches_the_curves_of_the_per_row_outcomes():
    rng = np.random.default_rng(0)
    parts = []
    for sample in range(40):
        correct = bool(rng.random() < 0.85)
        for attack in ("x", "y", "z"):
            true = rng.exponential(0.15)
            parts += rows(attack, sample, correct,
                          {eps: (true if true <= eps else None) for eps in (0.1, 0.2, 0.3)})
    frame = pd.DataFrame(parts)
    expected = from_flags(frame)
    out = optimality(frame).set_index("attack")["value"]
    for attack, value in expected.items():
        assert out[attack] == pytest.approx(value)
    assert out.max() < 1  # no attack was best on every sample here


def test_groups_without_a_comparison_give_no_rows_or_nan():
    single = hand_table().query("attack == 'a'")
    assert optimality(single).empty
    assert Optimality().from_results(single) is None
    unbounded = hand_table().assign(threat_model="unbounded")
    assert optimality(unbounded).empty
    nothing = pd.DataFrame(rows("a", 0, True, {0.1: None}) + rows("b", 0, True, {0.1: None}))
    out = optimality(nothing)
    assert out["value"].isna().all()
    assert "no attack broke" in out["note"].iat[0]


def test_samples_not_attacked_by_every_attack_are_left_out():
    frame = pd.concat([hand_table(), pd.DataFrame(rows("a", 9, True, {0.1: 0.01}))])
    out = optimality(frame).set_index("attack")
    assert out.loc["a", "value"] == pytest.approx(7 / 8)
    assert "1 sample(s) not attacked by every attack" in out.loc["a", "note"]


def test_threat_models_and_cells_are_separate():
    other = hand_table().assign(threat_model="l2")
    out = optimality(pd.concat([hand_table(), other]))
    assert len(out) == 4
    assert sorted(out["value"]) == pytest.approx([0.5, 0.5, 0.875, 0.875])


def test_registered_and_computed_in_a_run(tmp_path, registry):
    assert registry.get("metric", "optimality") is Optimality
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.rand(30, 4), torch.randint(0, 3, (30,))
    attacks = [{"name": "fgsm", "attack": "torchattacks.FGSM"},
               {"name": "pgd", "attack": "torchattacks.PGD", "steps": 5, "alpha": 0.05}]
    run = robench.evaluate(net, x, y, attacks, [0.1, 0.2, 0.4], metrics=["optimality"],
                           out=tmp_path, device="cpu", registry=registry)
    rows_ = run.metrics.query("metric == 'optimality'").set_index("attack")["value"]
    expected = from_flags(run.results)
    assert sorted(rows_.index) == ["fgsm", "pgd"]
    for attack, value in expected.items():
        assert rows_[attack] == pytest.approx(value)
