"""The perturbation-rate conventions of targeted L0 attacks, against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from robench_plugins.metrics.perturbation_rate import PerturbationRate

CELL = {"dataset": "d", "model": "m", "defense": "none", "seed": 0, "cell": "c"}


def _frame(attempts, *, threat_model="l0", num_classes=3):
    """Rows of one sweep at eps 0.1: ``attempts`` = [(sample, target, distance, success)]."""
    rows = [{**CELL, "attack": "jsma", "threat_model": threat_model, "epsilon": 0.1,
             "sample": s, "source": "data", "target": t, "distance": d, "success": ok}
            for s, t, d, ok in attempts]
    frame = pd.DataFrame(rows)
    frame["target"] = frame["target"].astype("Int64")
    frame.attrs["num_classes"] = num_classes
    return frame


def _values(frame):
    rows = PerturbationRate().from_results(frame)
    return dict(zip(rows["convention"], rows["value"]))


def test_three_classes_two_samples_by_hand():
    # sample 0 (class 0): targets 1, 2; sample 1 (class 1): targets 0, 2
    frame = _frame([(0, 1, 0.02, True), (0, 2, 0.06, False),
                    (1, 0, 0.04, True), (1, 2, 0.08, True)])
    values = _values(frame)
    # the authors' 3 x 2 array: own-class cells 0; mean over 6 cells
    assert values["authors_all"] == pytest.approx((0.02 + 0.06 + 0.04 + 0.08) / 6)
    assert values["authors_successful"] == pytest.approx((0.02 + 0.04 + 0.08) / 6)
    assert values["attempts"] == pytest.approx(0.20 / 4)
    assert values["successes"] == pytest.approx(0.14 / 3)
    # ten classes: the authors' rate is 0.9 x the mean over attempts
    ten = _frame([(0, t, 0.01 * t, True) for t in range(1, 10)], num_classes=10)
    assert _values(ten)["authors_all"] == pytest.approx(0.9 * _values(ten)["attempts"])


def test_no_success_gives_nan_mean_over_successes():
    values = _values(_frame([(0, 1, 0.02, False), (0, 2, 0.04, False)]))
    assert values["authors_successful"] == 0.0
    assert math.isnan(values["successes"])


def test_untargeted_or_other_threat_models_do_not_apply():
    assert PerturbationRate().from_results(_frame([(0, 1, 0.02, True)], threat_model="linf")
                                           ) is None
    untargeted = _frame([(0, 1, 0.02, True)])
    untargeted["target"] = pd.array([pd.NA], dtype="Int64")
    assert PerturbationRate().from_results(untargeted) is None
