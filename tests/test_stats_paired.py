"""Paired comparisons (plugins/metrics/paired.py): the two-level bootstrap against
closed forms, scipy's bootstrap and coverage on synthetic data with a known difference;
the paired_difference metric against hand-computed accuracies and the auc metric."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robench import ConfigError
from robench.options import parse_options
from robench_plugins.metrics import paired
from robench_plugins.metrics.accuracy import AUC
from robench_plugins.metrics.paired import PairedDifference, paired_difference


def test_identical_and_shifted_configurations_are_degenerate():
    """a == b: exactly 0 with a zero-width interval; a = b + c: exactly c."""
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, (3, 50)).astype(float)
    same = paired_difference(b, b)
    assert (same.estimate, same.lower, same.upper) == (0, 0, 0) and not same.significant
    shifted = paired_difference(b + 0.25, b)
    assert shifted.estimate == pytest.approx(0.25)
    assert shifted.lower == pytest.approx(0.25) and shifted.upper == pytest.approx(0.25)
    assert shifted.significant and shifted.direction == 1
    assert paired_difference(b, b + 0.25).direction == -1


def test_one_seed_matches_scipys_percentile_bootstrap_of_the_differences():
    """With one seed the two-level bootstrap is the ordinary bootstrap of the per-sample
    differences; its interval agrees with scipy.stats.bootstrap and says that training
    noise is left out."""
    rng = np.random.default_rng(1)
    a = (rng.random(400) < 0.7).astype(float)
    b = np.where(rng.random(400) < 0.8, a, 1 - a)     # paired: mostly the same samples
    ours = paired_difference(a[None], b[None], level=0.9, replicates=4000, seed=3)
    ref = stats.bootstrap(((a - b),), np.mean, confidence_level=0.9, n_resamples=4000,
                          method="percentile", random_state=4).confidence_interval
    assert ours.estimate == pytest.approx((a - b).mean())
    assert ours.lower == pytest.approx(ref.low, abs=0.01)
    assert ours.upper == pytest.approx(ref.high, abs=0.01)
    assert ours.seeds == 1 and "training noise not included" in ours.describe()


def test_pairing_uses_the_spread_of_the_differences():
    """Strongly correlated configurations: the width follows sd(a - b)/sqrt(n) (normal
    closed form), far below the unpaired sd(a)/sqrt(n)."""
    rng = np.random.default_rng(2)
    n = 2000
    a = (rng.random(n) < 0.5).astype(float)
    flip = rng.random(n) < 0.05
    b = np.where(flip, 1 - a, a)
    res = paired_difference(a[None], b[None], level=0.9, replicates=4000)
    z = stats.norm.ppf(0.95)
    paired_width = 2 * z * (a - b).std() / np.sqrt(n)
    assert res.upper - res.lower == pytest.approx(paired_width, rel=0.15)
    assert res.upper - res.lower < 0.5 * 2 * z * np.sqrt(2 * 0.25 / n)


def test_two_level_coverage_of_a_known_difference():
    """d[s, i] = delta + u_s + e[s, i] with seed effects u_s (training noise) and sample
    noise: the 90% interval covers delta in about 90% of 150 synthetic experiments, and
    leaving the seed level out (one seed's worth of spread) would cover far less."""
    rng = np.random.default_rng(5)
    delta, tau, sigma, seeds, samples = 0.05, 0.04, 0.4, 8, 100
    covered = samples_only = 0
    trials = 150
    for t in range(trials):
        u = rng.normal(0, tau, (seeds, 1))
        b = rng.normal(0, sigma, (seeds, samples))
        a = b + delta + u + rng.normal(0, sigma, (seeds, samples))
        res = paired_difference(a, b, level=0.9, replicates=400, seed=t)
        covered += res.lower <= delta <= res.upper
        flat = paired_difference(a.reshape(1, -1), b.reshape(1, -1), level=0.9,
                                 replicates=400, seed=t)
        samples_only += flat.lower <= delta <= flat.upper
    assert 0.8 <= covered / trials <= 0.97
    assert samples_only / trials < 0.8


def test_paired_difference_errors():
    with pytest.raises(ValueError, match="shape"):
        paired_difference(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        paired_difference(np.array([[np.nan]]), np.array([[0.0]]))
    with pytest.raises(ValueError, match="level"):
        paired_difference(np.zeros(3), np.zeros(3), level=1.0)
    with pytest.raises(ConfigError, match="baseline"):
        parse_options(PairedDifference.Options, {"baseline": "no_slash"})
    with pytest.raises(ValueError, match="baseline"):
        PairedDifference().from_results(tiny_results())


def tiny_results():
    """Two configurations x two seeds x 4 samples x eps (0, 0.1, 0.2), hand-written
    robust flags: "m/b" is never less robust than "m/a"."""
    flags = {  # (defense, seed) -> per eps, per sample correct_adv
        ("a", 0): [[1, 1, 1, 0], [1, 0, 1, 0], [0, 0, 1, 0]],
        ("b", 0): [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0]],
        ("a", 1): [[1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 0, 0]],
        ("b", 1): [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]],
    }
    rows = []
    for (defense, seed), per_eps in flags.items():
        for (k, eps), sample in itertools.product(enumerate((0.0, 0.1, 0.2)), range(4)):
            correct = bool(per_eps[k][sample])
            rows.append(dict(dataset="toy", model="m", defense=defense, seed=seed,
                             cell=f"m--{defense}--s{seed}", attack="fgsm",
                             threat_model="linf", epsilon=eps, sample=sample, source="data",
                             label=0, pred_clean=0 if per_eps[0][sample] else 1,
                             pred_adv=0 if correct else 1,
                             correct_clean=bool(per_eps[0][sample]), correct_adv=correct,
                             target=pd.NA, success=not correct))
    return pd.DataFrame(rows)


def test_metric_rows_match_hand_computed_accuracy_and_the_auc_metric():
    results = tiny_results()
    metric = PairedDifference(parse_options(PairedDifference.Options,
                                            {"baseline": "m/a", "eps": [0.1, 0.2],
                                             "replicates": 300}))
    rows = metric.from_results(results).set_index(["metric", "epsilon"], drop=False)
    acc = rows[rows["metric"] == "paired_robust_accuracy_difference"]
    # robust = clean-correct (eps 0 row) and correct under attack. eps 0.1: b 3/4, 3/4 and
    # a 2/4, 2/4 -> +0.25; eps 0.2: 3/4 - 1/4 (seed 0), 2/4 - 1/4 (seed 1) -> +0.375
    assert acc.loc[("paired_robust_accuracy_difference", 0.1), "value"] == pytest.approx(0.25)
    assert acc.loc[("paired_robust_accuracy_difference", 0.2), "value"] == pytest.approx(0.375)
    assert (acc["defense"] == "b").all() and (acc["n_seeds"] == 2).all() and (acc["n"] == 4).all()
    auc = AUC(parse_options(AUC.Options, {})).from_results(results)
    auc = auc[auc["convention"] == "unconditional"].groupby("defense")["value"].mean()
    row = rows[rows["metric"] == "paired_auc_difference"].iloc[0]
    assert row["value"] == pytest.approx(auc["b"] - auc["a"])
    assert row["lower"] <= row["value"] <= row["upper"] and row["note"] == ""
    other = PairedDifference(parse_options(PairedDifference.Options,
                                           {"baseline": "m/a", "eps": [0.1, 0.3],
                                            "replicates": 50})).from_results(results)
    assert sorted(other["epsilon"].dropna()) == [0.1]   # 0.3 is not in the sweep


def test_compare_one_seed_and_missing_configuration():
    results = tiny_results()
    one = results[results["seed"] == 0]
    res = paired.compare(one, "m/b", "m/a", attack="fgsm", eps=0.2, replicates=200)
    assert res.estimate == pytest.approx(0.5) and res.seeds == 1
    assert "training noise not included" in res.describe()
    with pytest.raises(ValueError, match="m/zzz"):
        paired.compare(results, "m/zzz", "m/a", attack="fgsm", eps=0.1)
    with pytest.raises(ValueError, match="budget"):
        paired.compare(results, "m/b", "m/a", attack="fgsm", eps=0.3)
