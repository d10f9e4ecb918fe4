"""The metric tables (robench_plugins.metrics._tables) on small result frames whose every
number is computed by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from robench_plugins.metrics import _tables as tables

CELL = {"dataset": "d", "model": "m", "defense": "none", "seed": 0, "cell": "m--none--s0"}


def frame(rows: list[dict], **common) -> pd.DataFrame:
    """Result rows: each dict gives epsilon, sample, label, pred_clean, pred_adv (and
    optionally target, distance, success, within_budget, attack, cell fields)."""
    out = []
    for row in rows:
        full = {**CELL, "attack": "pgd", "threat_model": "linf", "source": "data",
                "target": pd.NA, "distance": 0.0, **common, **row}
        full["correct_clean"] = full["pred_clean"] == full["label"]
        full["correct_adv"] = full["pred_adv"] == full["label"]
        if "success" not in row:
            full["success"] = (full["pred_adv"] == full["target"]
                               if full["target"] is not pd.NA
                               else full["pred_adv"] != full["label"])
        out.append(full)
    return pd.DataFrame(out)


def curve(grid, correct_by_eps, **common) -> pd.DataFrame:
    """Four samples with labels 0; ``correct_by_eps[i]`` lists which samples keep their
    label at ``grid[i]``; sample 3 is misclassified when clean."""
    rows = []
    for eps, correct in zip(grid, correct_by_eps):
        for sample in range(4):
            rows.append({"epsilon": eps, "sample": sample, "label": 0,
                         "pred_clean": 1 if sample == 3 else 0,
                         "pred_adv": 0 if sample in correct else 1})
    return frame(rows, **common)


def value(metrics: pd.DataFrame, **where) -> float:
    """The single ``value`` of the rows matching ``where``."""
    mask = np.ones(len(metrics), dtype=bool)
    for column, wanted in where.items():
        mask &= (metrics[column] == wanted).to_numpy()
    assert mask.sum() == 1, metrics[mask]
    return float(metrics.loc[mask, "value"].iloc[0])


# --------------------------------------------------------------- the named one-line bugs

def test_auc_is_normalised_by_the_range_of_the_grid():
    """Bug: AUC normalised by the last eps instead of the grid's range. Accuracy 1, 0.5,
    0 at eps 0.1, 0.2, 0.4: area 0.1 * 0.75 + 0.2 * 0.25 = 0.125 over a range of 0.3."""
    eps = np.array([0.1, 0.2, 0.4])
    assert tables.normalised_area(eps, np.array([1.0, 0.5, 0.0])) == pytest.approx(
        0.125 / 0.3)
    assert tables.normalised_area(eps, np.ones(3)) == pytest.approx(1.0)


def test_normalised_area_uses_the_first_and_last_eps():
    """A repeated first eps (0.1, 0.1, 0.3) still spans 0.2."""
    eps = np.array([0.1, 0.1, 0.3])
    assert tables.normalised_area(eps, np.ones(3)) == pytest.approx(1.0)


def test_normalised_area_needs_a_range():
    assert math.isnan(tables.normalised_area(np.array([0.1]), np.array([1.0])))
    assert math.isnan(tables.normalised_area(np.array([0.2, 0.2]), np.array([1.0, 1.0])))
    assert math.isnan(tables.normalised_area(np.array([0.3, 0.2]), np.array([1.0, 1.0])))
    assert math.isnan(tables.normalised_area(np.array([]), np.array([])))


def test_robust_accuracy_needs_the_clean_input_correct():
    """Bug: a sample counted robust when its adversarial is correct although its clean
    input is not. Samples 0 and 2 stay correct, 1 breaks, 3 (misclassified clean) is
    "corrected" by the attack: unconditional 2/4, conditional 2/3."""
    results = frame([
        {"epsilon": 0.1, "sample": 0, "label": 0, "pred_clean": 0, "pred_adv": 0},
        {"epsilon": 0.1, "sample": 1, "label": 0, "pred_clean": 0, "pred_adv": 1},
        {"epsilon": 0.1, "sample": 2, "label": 1, "pred_clean": 1, "pred_adv": 1},
        {"epsilon": 0.1, "sample": 3, "label": 1, "pred_clean": 0, "pred_adv": 1},
    ])
    acc = tables.robust_accuracy(results)
    assert value(acc, convention="unconditional") == pytest.approx(2 / 4)
    assert value(acc, convention="conditional") == pytest.approx(2 / 3)
    assert acc.set_index("convention")["n"].to_dict() == {"unconditional": 4,
                                                          "conditional": 3}
    assert set(acc["metric"]) == {"robust_accuracy"}


# --------------------------------------------------------------- accuracy

def test_targeted_robustness_needs_every_target_to_fail():
    """Sample 0 resists target 1 but not target 2: not robust; sample 1 resists both."""
    rows = [{"epsilon": 0.1, "sample": s, "label": 0, "pred_clean": 0, "target": t,
             "pred_adv": t if (s, t) == (0, 2) else 0} for s in (0, 1) for t in (1, 2)]
    acc = tables.robust_accuracy(frame(rows))
    assert value(acc, convention="unconditional") == pytest.approx(0.5)
    samples = tables.robust_samples(frame(rows))
    assert samples["robust"].tolist() == [False, True]


def test_clean_accuracy_counts_each_sample_once_over_attacks():
    """Two attacks share samples 0..3 (one misclassified): 3/4, n = 4, not 8."""
    both = pd.concat([curve([0.1], [[0, 1, 2]]),
                      curve([0.1], [[0]], attack="fgsm")])
    acc = tables.clean_accuracy(both)
    assert acc["value"].tolist() == [pytest.approx(0.75)] and acc["n"].tolist() == [4]
    assert acc["metric"].tolist() == ["clean_accuracy"]
    assert tables.clean_accuracy(both[:0]).empty


def test_generated_noise_rows_are_not_data():
    noise = curve([0.1], [[0, 1, 2]], source="noise")
    data = curve([0.1], [[0]])
    acc = tables.robust_accuracy(pd.concat([data, noise]))
    assert value(acc, convention="unconditional") == pytest.approx(0.25)
    assert tables.robust_accuracy(noise).empty


def test_bootstrap_interval_contains_the_mean_and_is_degenerate_for_constants():
    results = curve([0.1], [[0, 1]])
    acc = tables.robust_accuracy(results, bootstrap=200, seed=1)
    row = acc[acc["convention"] == "unconditional"].iloc[0]
    assert row["lower"] <= row["value"] <= row["upper"] and row["lower"] < row["upper"]
    assert tables.bootstrap_interval(np.ones(5), resamples=50, level=0.9, seed=0) == (1, 1)
    assert tables.bootstrap_interval(np.array([0.25]), resamples=50, level=0.9,
                                     seed=0) == (0.25, 0.25)
    assert all(map(math.isnan, tables.bootstrap_interval(np.array([]), resamples=50,
                                                         level=0.9, seed=0)))


# --------------------------------------------------------------- area under the curve

def test_auc_of_robust_accuracy_by_hand():
    """Unconditional accuracy 3/4, 2/4, 0 at eps 0.1, 0.2, 0.4: area 0.1 * 0.625 + 0.2 *
    0.25 = 0.1125 over 0.3; conditional (3 samples) 1, 2/3, 0: 0.1 * 5/6 + 0.2 / 3 =
    0.15 over 0.3."""
    results = curve([0.1, 0.2, 0.4], [[0, 1, 2], [0, 1], []])
    area = tables.auc(tables.robust_accuracy(results), compare=["dataset", "attack"])
    assert value(area, convention="unconditional") == pytest.approx(0.1125 / 0.3)
    assert value(area, convention="conditional") == pytest.approx(0.15 / 0.3)
    assert area["eps_min"].tolist() == [0.1, 0.1] and area["eps_max"].tolist() == [0.4, 0.4]
    assert area["n_eps"].tolist() == [3, 3] and area["note"].tolist() == ["", ""]


def test_auc_compares_curves_on_their_common_grid():
    """Model a has eps 0.1, 0.2, 0.4, model b 0.1, 0.4: both integrate over (0.1, 0.4),
    and the note says one eps value was dropped. a: unconditional 3/4 and 0 ->
    0.3 * 0.375 / 0.3 = 0.375."""
    a = curve([0.1, 0.2, 0.4], [[0, 1, 2], [0, 1], []], model="a", cell="a")
    b = curve([0.1, 0.4], [[0, 1], [0]], model="b", cell="b")
    area = tables.auc(tables.robust_accuracy(pd.concat([a, b])),
                      compare=["dataset", "attack"])
    assert value(area, model="a", convention="unconditional") == pytest.approx(0.375)
    # b: 2/4 and 1/4 -> mean 0.375
    assert value(area, model="b", convention="unconditional") == pytest.approx(0.375)
    assert set(area["note"]) == {"1 eps value(s) not shared by every compared curve "
                                 "were dropped"}
    assert set(area["n_eps"]) == {2}


def test_auc_of_curves_not_compared_keep_their_own_grid():
    a = curve([0.1, 0.2, 0.4], [[0, 1, 2], [0, 1], []], model="a", cell="a")
    b = curve([0.1, 0.4], [[0, 1], [0]], model="b", cell="b")
    area = tables.auc(tables.robust_accuracy(pd.concat([a, b])),
                      compare=["dataset", "attack", "model"])
    assert value(area, model="a", convention="unconditional") == pytest.approx(0.1125 / 0.3)
    assert set(area["note"]) == {""}


def test_auc_until_chance_stops_where_every_curve_reaches_chance():
    """Two classes (chance 0.5): unconditional accuracy 3/4, 2/4, 1/4, 0 at eps 0.1, 0.2,
    0.3, 0.4 reaches chance at 0.2: area 0.1 * 0.625 / 0.1 = 0.625."""
    results = curve([0.1, 0.2, 0.3, 0.4], [[0, 1, 2], [0, 1], [0], []])
    acc = tables.robust_accuracy(results)
    acc = acc[acc["convention"] == "unconditional"]
    area = tables.auc(acc, compare=["dataset", "attack"], num_classes=2, until_chance=True)
    assert value(area) == pytest.approx(0.625)
    assert area["eps_max"].tolist() == [0.2]
    # three classes: chance 1/3, first reached at 0.3 (1/4)
    area = tables.auc(acc, compare=["dataset", "attack"], num_classes=3, until_chance=True)
    assert area["eps_max"].tolist() == [0.3]
    # never at chance: the whole grid
    area = tables.auc(acc, compare=["dataset", "attack"], num_classes=100,
                      until_chance=True)
    assert area["eps_max"].tolist() == [0.4]


def test_auc_of_a_single_eps_is_nan_with_a_note():
    acc = tables.robust_accuracy(curve([0.1], [[0, 1]]))
    area = tables.auc(acc, compare=["dataset", "attack"])
    assert area["value"].isna().all()
    assert set(area["note"]) == {"common grid has fewer than two eps values"}


def test_sample_areas_average_to_the_auc():
    results = curve([0.1, 0.2, 0.4], [[0, 1, 2], [0, 1], []])
    samples = tables.robust_samples(results)
    areas = tables.sample_areas(samples, np.array([0.1, 0.2, 0.4]))
    # sample 0 and 1: robust, robust, not -> 0.1 + 0.1 = 0.2 / 0.3; sample 2: 0.05 / 0.3
    assert areas.tolist() == pytest.approx([0.2 / 0.3, 0.2 / 0.3, 0.05 / 0.3, 0.0])
    assert np.isnan(tables.sample_areas(samples, np.array([0.1]))).all()
    area = tables.auc(tables.robust_accuracy(results), compare=["dataset", "attack"],
                      samples=samples, bootstrap=100, seed=0)
    row = area[area["convention"] == "conditional"].iloc[0]
    assert row["lower"] <= row["value"] <= row["upper"]
    assert row["upper"] <= 0.2 / 0.3 + 1e-12  # only clean-correct samples are resampled


# --------------------------------------------------------------- breakdown, distances

def test_breakdown_point_is_the_first_eps_at_or_below_chance():
    results = curve([0.1, 0.2, 0.3], [[0, 1, 2], [0, 1], [0]])
    acc = tables.robust_accuracy(results)
    points = tables.breakdown_point(acc, num_classes=2)
    # unconditional 3/4, 2/4 (= chance), 1/4; conditional 1, 2/3, 1/3
    assert value(points, convention="unconditional") == 0.2
    assert value(points, convention="conditional") == 0.3
    assert set(points["chance"]) == {0.5}
    never = tables.breakdown_point(acc, num_classes=10)
    assert never["value"].isna().all()
    assert set(never["note"]) == {"accuracy stays above chance up to eps=0.3"}


def accuracy_rows(values, epsilons, **common) -> pd.DataFrame:
    """A robust_accuracy table of one unconditional curve."""
    return pd.DataFrame([{**CELL, "attack": "pgd", "threat_model": "linf",
                          "convention": "unconditional", "metric": "robust_accuracy",
                          "epsilon": e, "value": v, **common}
                         for e, v in zip(epsilons, values)])


def test_chance_includes_its_tiny_tolerance():
    """An accuracy of exactly 1/2 + 1e-12 counts as at chance (two classes)."""
    at = 0.5 + 1e-12
    points = tables.breakdown_point(accuracy_rows([0.9, at, 0.1], [0.1, 0.2, 0.3]), 2)
    assert points["value"].tolist() == [0.2]
    assert points["metric"].tolist() == ["breakdown_eps"] and points["note"].tolist() == [""]
    area = tables.auc(accuracy_rows([0.9, at, 0.1], [0.1, 0.2, 0.3]),
                      compare=["dataset", "attack"], num_classes=2, until_chance=True)
    assert area["eps_max"].tolist() == [0.2]


def test_breakdown_and_auc_rows_are_sorted_by_their_keys():
    rows = pd.concat([accuracy_rows([0.9, 0.1], [0.1, 0.2], model="b", cell="b"),
                      accuracy_rows([0.9, 0.8], [0.1, 0.2], model="a", cell="a")])
    assert tables.breakdown_point(rows, 2)["cell"].tolist() == ["a", "b"]
    area = tables.auc(rows, compare=["dataset", "attack"])
    assert area["cell"].tolist() == ["a", "b"]
    assert area["value"].tolist() == pytest.approx([0.85, 0.5])
    both = pd.concat([rows.assign(attack="z"), rows.assign(attack="y")])
    assert tables.auc(both, compare=["dataset", "attack"])["attack"].tolist() == [
        "y", "y", "z", "z"]


def test_auc_intervals_only_when_asked_and_seeded():
    """Per-sample areas on (0.1, 0.2, 0.4): 2/3, 2/3, 1/6, 0 (see sample_areas); the
    interval is scipy's bootstrap of those with seed 0 by default."""
    results = curve([0.1, 0.2, 0.4], [[0, 1, 2], [0, 1], []])
    samples = tables.robust_samples(results)
    acc = tables.robust_accuracy(results)
    for kwargs in ({}, {"samples": samples}, {"bootstrap": 5}):
        area = tables.auc(acc, compare=["dataset", "attack"], **kwargs)
        assert "lower" not in area.columns
    area = tables.auc(acc, compare=["dataset", "attack"], samples=samples, bootstrap=40)
    row = area[area["convention"] == "unconditional"].iloc[0]
    low, high = scipy_interval([2 / 3, 2 / 3, 1 / 6, 0.0], 0.95, 0, 40)
    assert (row["lower"], row["upper"]) == (pytest.approx(low), pytest.approx(high))
    one = tables.auc(acc, compare=["dataset", "attack"], samples=samples, bootstrap=1)
    assert "lower" in one.columns


def test_sample_areas_on_a_two_point_grid():
    samples = tables.robust_samples(curve([0.1, 0.3], [[0, 1], [0]]))
    areas = tables.sample_areas(samples, np.array([0.1, 0.3]))
    assert areas.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_minimal_and_median_distances_by_hand():
    """Sample 0 broken at eps 0.2 (distance 0.15) and 0.3 (0.25): 0.15; sample 1 never
    broken: inf; sample 2 misclassified when clean: 0."""
    rows = []
    for eps, dists in ((0.2, (0.15, 0.2, 0.1)), (0.3, (0.25, 0.3, 0.1))):
        rows += [{"epsilon": eps, "sample": 0, "label": 0, "pred_clean": 0, "pred_adv": 1,
                  "distance": dists[0]},
                 {"epsilon": eps, "sample": 1, "label": 0, "pred_clean": 0, "pred_adv": 0,
                  "distance": dists[1]},
                 {"epsilon": eps, "sample": 2, "label": 0, "pred_clean": 1, "pred_adv": 1,
                  "distance": dists[2]}]
    results = frame(rows)
    dist = tables.minimal_distances(results)
    assert dist["distance"].tolist() == [0.15, math.inf, 0.0]
    med = tables.median_distance(results)
    assert value(med, metric="median_distance", convention="unconditional") == 0.15
    # conditional: samples 0 and 1 -> median of (0.15, inf) = inf
    assert value(med, metric="median_distance", convention="conditional") == math.inf
    assert value(med, metric="adversarial_found", convention="unconditional") == \
        pytest.approx(2 / 3)
    assert value(med, metric="adversarial_found", convention="conditional") == 0.5


def scipy_interval(values, level, seed, resamples):
    """scipy's percentile bootstrap of the mean, called directly."""
    from scipy import stats

    res = stats.bootstrap((np.asarray(values, dtype="float64"),), np.mean,
                          n_resamples=resamples, confidence_level=level,
                          method="percentile", rng=np.random.default_rng(seed))
    return res.confidence_interval.low, res.confidence_interval.high


def test_clean_accuracy_interval_is_scipys_bootstrap_with_the_given_settings():
    results = curve([0.1], [[0]])  # clean: 1, 1, 1, 0
    plain = tables.clean_accuracy(results)
    assert "lower" not in plain.columns and "upper" not in plain.columns
    acc = tables.clean_accuracy(results, bootstrap=50, level=0.5, seed=7)
    low, high = scipy_interval([1, 1, 1, 0], 0.5, 7, 50)
    assert (acc["lower"].iloc[0], acc["upper"].iloc[0]) == (pytest.approx(low),
                                                            pytest.approx(high))
    acc = tables.robust_accuracy(curve([0.1], [[0, 1]]), bootstrap=50, level=0.6, seed=3)
    row = acc[acc["convention"] == "unconditional"].iloc[0]
    low, high = scipy_interval([1, 1, 0, 0], 0.6, 3, 50)
    assert (row["lower"], row["upper"]) == (pytest.approx(low), pytest.approx(high))


def test_robust_accuracy_intervals_only_when_asked_and_seeded():
    results = curve([0.1], [[0, 1]])
    assert "lower" not in tables.robust_accuracy(results).columns
    samples = tables.robust_samples(results)
    direct = tables.accuracy_from_samples(samples, list(tables.CELL), "m")
    assert "lower" not in direct.columns
    assert list(direct.index) == [0, 1]  # a fresh index over both conventions
    assert direct.set_index("convention")["value"].to_dict() == {
        "unconditional": 0.5, "conditional": pytest.approx(2 / 3)}
    low, high = scipy_interval([1, 1, 0, 0], 0.95, 0, 30)
    for acc in (tables.robust_accuracy(results, bootstrap=30),
                tables.accuracy_from_samples(samples, list(tables.CELL), "m", bootstrap=30)):
        row = acc[acc["convention"] == "unconditional"].iloc[0]
        assert (row["lower"], row["upper"]) == (pytest.approx(low), pytest.approx(high))
    assert tables.accuracy_from_samples(samples[:0], list(tables.CELL), "m").empty
    assert "lower" in tables.robust_accuracy(results, bootstrap=1).columns


def twelve_samples() -> pd.DataFrame:
    """12 samples at eps 0.1 and 0.3: 9 clean-correct; robust 7 and 4 of them."""
    rows = []
    for sample in range(12):
        for eps, robust_below in ((0.1, 7), (0.3, 4)):
            rows.append({"epsilon": eps, "sample": sample, "label": 0,
                         "pred_clean": 0 if sample < 9 else 1,
                         "pred_adv": 0 if sample < robust_below else 1})
    return frame(rows)


def test_intervals_use_the_default_level_and_seed_on_the_right_samples():
    """Defaults: level 0.95, seed 0; conditional intervals resample the clean-correct
    samples only. Per-sample areas on (0.1, 0.3): 1 (samples 0-3), 0.5 (4-6), 0."""
    results = twelve_samples()
    clean = tables.clean_accuracy(results, bootstrap=60).iloc[0]
    assert (clean["lower"], clean["upper"]) == tuple(
        pytest.approx(v) for v in scipy_interval([1] * 9 + [0] * 3, 0.95, 0, 60))
    robust = [1] * 7 + [0] * 5
    for acc in (tables.robust_accuracy(results, bootstrap=60),
                tables.accuracy_from_samples(tables.robust_samples(results),
                                             list(tables.CELL) + ["epsilon"], "m",
                                             bootstrap=60)):
        row = acc[(acc["convention"] == "unconditional") & (acc["epsilon"] == 0.1)].iloc[0]
        assert (row["lower"], row["upper"]) == tuple(
            pytest.approx(v) for v in scipy_interval(robust, 0.95, 0, 60))
    area = tables.auc(tables.robust_accuracy(results), compare=["dataset", "attack"],
                      samples=tables.robust_samples(results), bootstrap=60)
    row = area[area["convention"] == "conditional"].iloc[0]
    assert (row["lower"], row["upper"]) == tuple(
        pytest.approx(v) for v in scipy_interval([1] * 4 + [0.5] * 3 + [0] * 2, 0.95, 0, 60))
    assert set(area["metric"]) == {"auc"}


def test_auc_of_curves_without_a_common_eps():
    a = curve([0.1, 0.2], [[0], [0]], model="a", cell="a")
    b = curve([0.3, 0.4], [[0], [0]], model="b", cell="b")
    area = tables.auc(tables.robust_accuracy(pd.concat([a, b])),
                      compare=["dataset", "attack"])
    assert area["value"].isna().all() and area["eps_min"].isna().all()
    assert area["eps_max"].isna().all() and set(area["n_eps"]) == {0}
    assert set(area["note"]) == {"4 eps value(s) not shared by every compared curve were "
                                 "dropped; common grid has fewer than two eps values"}


def test_per_sample_tables_are_sorted_whatever_the_row_order():
    a = curve([0.1, 0.2], [[0, 1, 2], [0]], model="a", cell="a")
    b = curve([0.1, 0.2], [[0], [0]], model="b", cell="b")
    results = pd.concat([a, b]).iloc[::-1].reset_index(drop=True)
    samples = tables.robust_samples(results)
    assert samples["cell"].tolist() == ["a"] * 8 + ["b"] * 8
    assert samples["sample"].tolist()[:4] == [0, 1, 2, 3]
    assert tables.clean_accuracy(results)["cell"].tolist() == ["a", "b"]


def test_tables_are_sorted_by_their_keys_whatever_the_row_order():
    """Rows given in reverse order (cell b before a, sample 2 before 0) come out sorted."""
    a = curve([0.1, 0.2], [[0, 1, 2], [0]], model="a", cell="a")
    b = curve([0.1, 0.2], [[0], [0]], model="b", cell="b")
    results = pd.concat([a, b]).iloc[::-1].reset_index(drop=True)
    assert tables.minimal_distances(results)["cell"].tolist() == ["a"] * 4 + ["b"] * 4
    assert tables.minimal_distances(results)["sample"].tolist() == [0, 1, 2, 3] * 2
    med = tables.median_distance(results)
    assert med[med["metric"] == "median_distance"]["cell"].tolist() == ["a", "b"] * 2
    out = tables.attack_success(results)
    assert out[out["metric"] == "success_rate"]["cell"].tolist() == ["a", "a", "b", "b"]
    assert out[out["metric"] == "success_rate"]["epsilon"].tolist() == [0.1, 0.2] * 2
    acc = tables.robust_accuracy(results)
    assert acc["cell"].tolist()[:4] == ["a", "a", "b", "b"]


def test_median_distance_rows_carry_their_keys_and_counts():
    results = curve([0.1], [[0]])
    med = tables.median_distance(results)
    assert set(med["cell"]) == {CELL["cell"]} and set(med["attack"]) == {"pgd"}
    assert med.set_index(["metric", "convention"])["n"].to_dict() == {
        ("median_distance", "unconditional"): 4, ("adversarial_found", "unconditional"): 4,
        ("median_distance", "conditional"): 3, ("adversarial_found", "conditional"): 3}
    assert med.set_index("metric")["higher_is_better"].to_dict() == {
        "median_distance": True, "adversarial_found": False}


def test_attack_success_by_hand():
    results = frame([
        {"epsilon": 0.1, "sample": 0, "label": 0, "pred_clean": 0, "pred_adv": 1,
         "distance": 0.1},
        {"epsilon": 0.1, "sample": 1, "label": 0, "pred_clean": 0, "pred_adv": 0,
         "distance": 0.3},
    ])
    out = tables.attack_success(results)
    assert value(out, metric="success_rate") == 0.5
    assert value(out, metric="mean_distance") == pytest.approx(0.2)
    assert value(out, metric="mean_distance_success") == pytest.approx(0.1)
    assert out.set_index("metric")["higher_is_better"].to_dict() == {
        "success_rate": False, "mean_distance": True, "mean_distance_success": True}
    assert set(out["n"]) == {2} and set(out["cell"]) == {CELL["cell"]}
    assert set(out["epsilon"]) == {0.1} and set(out["attack"]) == {"pgd"}
