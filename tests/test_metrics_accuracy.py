"""Accuracy metrics of the result frame against hand computations."""

import math

import numpy as np
import pandas as pd
import pytest

from robench.plugins import build_registry
from robench_plugins.metrics.accuracy import (
    AUC,
    BreakdownPoint,
    CleanAccuracy,
    CurveOptions,
    IntervalOptions,
    MedianDistance,
    RobustAccuracy,
)
from robench_plugins.metrics.testing import result_frame


def curve_rows(model, curve, n=4, attack="pgd", **extra):
    """Rows of one model whose accuracy at each eps of ``curve`` ({eps: acc}) is exact:
    with ``n`` samples (all of label 0, correct when clean), sample i stays correct
    while i < acc * n."""
    rows = []
    for eps, acc in curve.items():
        for i in range(n):
            rows.append(dict(model=model, attack=attack, epsilon=eps, sample=i, label=0,
                             pred_clean=0, pred_adv=0 if i < round(acc * n) else 1,
                             distance=eps, **extra))
    return rows


def pick(frame, **where):
    mask = np.ones(len(frame), dtype=bool)
    for col, value in where.items():
        mask &= (frame[col] == value).to_numpy()
    assert mask.sum() == 1, (where, frame)
    return frame[mask].iloc[0]


def test_registered():
    names = set(build_registry(autoload=False).names("metric"))
    assert {"auc", "clean_accuracy", "robust_accuracy", "breakdown_point",
            "median_distance"} <= names


def test_clean_accuracy_counts_each_sample_once():
    rows = []
    for attack, eps_list in (("pgd", [0.1, 0.2]), ("fgsm", [0.1])):
        for eps in eps_list:
            for sample, (label, pred) in enumerate([(0, 0), (1, 1), (2, 2), (3, 0)]):
                rows.append(dict(attack=attack, epsilon=eps, sample=sample, label=label,
                                 pred_clean=pred, pred_adv=pred))
    # an extra sample only the fgsm attack saw, misclassified; and a noise input
    rows.append(dict(attack="fgsm", epsilon=0.1, sample=4, label=1, pred_clean=0, pred_adv=0))
    rows.append(dict(attack="fool", epsilon=0.1, sample=0, label=None, pred_clean=3,
                     pred_adv=3, source="noise"))
    out = CleanAccuracy().from_results(result_frame(rows))
    assert len(out) == 1
    assert out["value"].iat[0] == pytest.approx(3 / 5)
    assert out["n"].iat[0] == 5


def test_robust_accuracy_both_conventions_and_targets():
    # (label, pred_clean, pred_adv) per sample at one eps
    table = [(0, 0, 0), (1, 1, 0), (2, 0, 0), (3, 3, 3), (4, 2, 4)]
    rows = [dict(sample=i, epsilon=0.1, label=y, pred_clean=c, pred_adv=a)
            for i, (y, c, a) in enumerate(table)]
    out = RobustAccuracy().from_results(result_frame(rows))
    # robust = clean-correct and still correct: samples 0 and 3 (sample 4 "recovered"
    # under attack but was wrong clean, so it is not robust)
    assert pick(out, convention="unconditional")["value"] == pytest.approx(2 / 5)
    assert pick(out, convention="conditional")["value"] == pytest.approx(2 / 3)
    assert pick(out, convention="conditional")["n"] == 3

    # targeted: a sample is robust only if no target moved it
    trows = [dict(sample=0, target=t, label=0, pred_clean=0, pred_adv=p, epsilon=0.1)
             for t, p in ((1, 0), (2, 2))]
    trows += [dict(sample=1, target=t, label=1, pred_clean=1, pred_adv=1, epsilon=0.1)
              for t in (0, 2)]
    out = RobustAccuracy().from_results(result_frame(trows))
    assert pick(out, convention="unconditional")["value"] == pytest.approx(1 / 2)


def test_bootstrap_interval_brackets_value():
    rng = np.random.default_rng(0)
    rows = [dict(sample=i, epsilon=0.1, label=0, pred_clean=0, pred_adv=int(rng.random() < 0.4))
            for i in range(200)]
    out = RobustAccuracy(IntervalOptions(bootstrap=500)).from_results(result_frame(rows))
    row = pick(out, convention="unconditional")
    assert row["lower"] < row["value"] < row["upper"]
    # binomial standard error ~ sqrt(.6*.4/200) = 0.035: 95% interval half-width ~ 0.068
    assert 0.04 < (row["upper"] - row["lower"]) / 2 < 0.1


def test_auc_of_known_piecewise_linear_curve_on_common_grid():
    curve_a = {0.0: 1.0, 0.1: 0.5, 0.2: 0.5, 0.4: 0.0}
    curve_b = {0.0: 1.0, 0.1: 1.0, 0.2: 1.0, 0.3: 0.25, 0.4: 1.0}   # 0.3 only in B
    frame = result_frame(curve_rows("a", curve_a) + curve_rows("b", curve_b))
    out = AUC().from_results(frame)
    a = pick(out, model="a", convention="unconditional")
    b = pick(out, model="b", convention="unconditional")
    # hand trapezoid: (1+.5)/2*.1 + (.5+.5)/2*.1 + (.5+0)/2*.2 = 0.175 over range 0.4
    assert a["value"] == pytest.approx(0.175 / 0.4)
    # B is compared on the common grid only (0.3 dropped): 100% everywhere -> 1.0
    assert b["value"] == pytest.approx(1.0)
    assert (a["eps_min"], a["eps_max"]) == (0.0, 0.4)
    assert "1 eps value" in b["note"]
    # another attack's curves are not compared with these
    other = result_frame(curve_rows("a", {0.0: 1.0, 0.5: 0.0}, attack="fgsm"))
    out = AUC().from_results(pd.concat([frame, other], ignore_index=True))
    f = pick(out, model="a", attack="fgsm", convention="unconditional")
    assert f["value"] == pytest.approx(0.5) and f["eps_max"] == 0.5


def test_auc_until_chance_stops_where_every_curve_is_at_chance():
    curve_a = {0.0: 1.0, 0.1: 0.5, 0.2: 0.25, 0.3: 0.0}
    curve_b = {0.0: 1.0, 0.1: 0.75, 0.2: 0.5, 0.3: 0.5}
    frame = result_frame(curve_rows("a", curve_a) + curve_rows("b", curve_b))
    out = AUC(CurveOptions(until_chance=True, num_classes=2)).from_results(frame)
    b = pick(out, model="b", convention="unconditional")
    # chance 0.5: both curves are <= 0.5 first at eps 0.2, so the grid is [0, 0.2]
    assert b["eps_max"] == pytest.approx(0.2)
    assert b["value"] == pytest.approx(((1 + .75) / 2 * .1 + (.75 + .5) / 2 * .1) / .2)


def test_breakdown_point_is_first_eps_at_chance():
    frame = result_frame(curve_rows("a", {0.0: 1.0, 0.1: 0.75, 0.2: 0.5, 0.3: 0.0})
                         + curve_rows("b", {0.0: 1.0, 0.1: 0.75}))
    out = BreakdownPoint(BreakdownPoint.Options(num_classes=2)).from_results(frame)
    assert pick(out, model="a", convention="unconditional")["value"] == pytest.approx(0.2)
    b = pick(out, model="b", convention="unconditional")
    assert math.isnan(b["value"]) and "0.1" in b["note"]


def test_breakdown_point_infers_classes_from_labels():
    rows = [dict(sample=i, epsilon=e, label=i % 4, pred_clean=i % 4,
                 pred_adv=i % 4 if i < k else (i + 1) % 4)
            for e, k in ((0.1, 3), (0.2, 1), (0.3, 0)) for i in range(4)]
    out = BreakdownPoint().from_results(result_frame(rows))
    # 4 classes: chance 0.25, first reached at eps 0.2 (accuracy 1/4)
    assert pick(out, convention="unconditional")["value"] == pytest.approx(0.2)


def test_median_distance():
    # sample 0 broken at 0.2 (distance .15) and 0.3; sample 1 never; sample 2 broken at
    # 0.1 (distance .05); sample 3 misclassified clean (distance 0)
    rows = []
    spec = {0: {0.2: 0.15, 0.3: 0.25}, 1: {}, 2: {0.1: 0.05, 0.2: 0.1, 0.3: 0.2}, 3: None}
    for sample, broken in spec.items():
        for eps in (0.1, 0.2, 0.3):
            if broken is None:
                rows.append(dict(sample=sample, epsilon=eps, label=1, pred_clean=0,
                                 pred_adv=0, distance=eps))
            else:
                hit = eps in broken
                rows.append(dict(sample=sample, epsilon=eps, label=0, pred_clean=0,
                                 pred_adv=1 if hit else 0,
                                 distance=broken.get(eps, eps)))
    out = MedianDistance().from_results(result_frame(rows))
    unc = pick(out, metric="median_distance", convention="unconditional")
    assert unc["value"] == pytest.approx(np.median([0.15, np.inf, 0.05, 0.0]))
    cond = pick(out, metric="median_distance", convention="conditional")
    assert cond["value"] == pytest.approx(0.15)
    found = pick(out, metric="adversarial_found", convention="conditional")
    assert found["value"] == pytest.approx(2 / 3)


def test_options_are_validated():
    with pytest.raises(ValueError, match="compare"):
        CurveOptions(compare=("dataset", "nonsense"))
    with pytest.raises(ValueError, match="bootstrap"):
        IntervalOptions(bootstrap=-1)


def test_bootstrap_covers_true_mean_at_about_nominal_rate():
    """Percentile bootstrap of the mean: over 200 synthetic samples (n = 60, Bernoulli
    p = 0.7, the case of an accuracy) the 90% interval covers p about 90% of the time."""
    from robench_plugins.metrics._tables import bootstrap_interval

    rng = np.random.default_rng(1)
    p, reps, covered = 0.7, 200, 0
    for rep in range(reps):
        values = (rng.random(60) < p).astype(float)
        lo, hi = bootstrap_interval(values, resamples=400, level=0.9, seed=rep)
        covered += lo <= p <= hi
    # binomial sd of the rate over 200 reps ~ 0.021; percentile intervals under-cover a bit
    assert 0.82 <= covered / reps <= 0.96


def test_attack_success_over_sample_target_pairs():
    from robench_plugins.metrics.accuracy import AttackSuccess

    # JSMA-like: 2 samples x 2 targets at gamma 0.05; (target, pred_adv, distance)
    attempts = {0: [(1, 1, 0.02), (2, 0, 0.05)], 1: [(0, 0, 0.04), (2, 2, 0.01)]}
    rows = [dict(attack="jsma", threat_model="l0", epsilon=0.05, sample=s, label=s,
                 pred_clean=s, target=t, pred_adv=p, distance=dist)
            for s, tries in attempts.items() for t, p, dist in tries]
    out = AttackSuccess().from_results(result_frame(rows)).set_index("metric")["value"]
    assert out["success_rate"] == pytest.approx(3 / 4)
    assert out["mean_distance"] == pytest.approx((0.02 + 0.05 + 0.04 + 0.01) / 4)
    assert out["mean_distance_success"] == pytest.approx((0.02 + 0.04 + 0.01) / 3)


def test_every_result_metric_handles_an_empty_frame():
    from robench.results import RESULT_COLUMNS
    from robench_plugins.metrics import METRICS

    empty = pd.DataFrame(columns=list(RESULT_COLUMNS))
    for metric in METRICS:
        assert metric().from_results(empty) is None, metric.name


def test_chance_uses_the_class_count_the_host_attaches():
    frame = result_frame(curve_rows("a", {0.0: 1.0, 0.1: 0.5, 0.2: 0.25}))
    inferred = BreakdownPoint().from_results(frame)      # labels 0/1 seen: chance 1/2
    assert pick(inferred, convention="unconditional")["value"] == pytest.approx(0.1)
    frame.attrs["num_classes"] = 4                       # chance 1/4
    out = BreakdownPoint().from_results(frame)
    assert pick(out, convention="unconditional")["value"] == pytest.approx(0.2)


def test_auc_bootstrap_interval_over_per_sample_areas():
    rng = np.random.default_rng(2)
    eps = [0.0, 0.1, 0.2, 0.3]
    rows = []
    for i in range(60):           # sample i is robust up to a random breaking eps
        breaks = rng.choice(eps + [1.0])
        rows += [dict(model="a", epsilon=e, sample=i, label=0, pred_clean=0,
                      pred_adv=0 if e < breaks else 1) for e in eps]
    frame = result_frame(rows)
    plain = pick(AUC().from_results(frame), convention="unconditional")
    boot = pick(AUC(CurveOptions(bootstrap=400)).from_results(frame), convention="unconditional")
    assert boot["value"] == pytest.approx(plain["value"])
    assert boot["lower"] < boot["value"] < boot["upper"]
    assert boot["upper"] - boot["lower"] < 0.3
