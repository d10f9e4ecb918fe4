"""The metric stages: from_results, then from_metrics in order; directions per row."""

import pandas as pd

from robench import Metric
from robench.metric_pipeline import DIRECTION, compute
from robench_plugins.metrics import METRICS


class Constant(Metric):
    """One row ``metric = name`` with value 1 from the results."""

    def __init__(self, name, higher=None):
        super().__init__()
        self.name, self.higher_is_better = name, higher

    def from_results(self, results):
        return pd.DataFrame({"metric": [self.name], "value": [1.0]})


class Counter(Metric):
    """From the metric rows: how many rows it saw, and their metric names."""

    higher_is_better = False

    def __init__(self, name):
        super().__init__()
        self.name = name
        self.seen = None

    def from_metrics(self, metrics):
        self.seen = sorted(metrics["metric"])
        return pd.DataFrame({"metric": [self.name], "value": [float(len(metrics))]})


class Mixed(Metric):
    """Rows with their own directions, one left to the class."""

    name = "mixed"
    higher_is_better = True

    def from_results(self, results):
        return pd.DataFrame({"metric": ["a", "b", "c"], "value": [1.0, 2.0, 3.0],
                             DIRECTION: [False, None, True]})


class Broken(Metric):
    name = "broken"

    def from_results(self, results):
        raise RuntimeError("no rows today")


def test_from_metrics_sees_every_result_row_and_the_earlier_summaries_only():
    first, second = Counter("first"), Counter("second")
    cell_rows = pd.DataFrame({"metric": ["per_cell"], "value": [5.0]})
    frame, errors = compute([first, Constant("x"), second, Constant("y")], pd.DataFrame(),
                            cell_rows)
    assert errors == {}
    assert first.seen == ["per_cell", "x", "y"]
    assert second.seen == ["first", "per_cell", "x", "y"]
    assert list(frame["metric"]) == ["per_cell", "x", "y", "first", "second"]
    assert frame.set_index("metric").loc["second", "value"] == 4.0


def test_direction_column_from_the_class_unless_a_row_says_otherwise():
    frame, _ = compute([Constant("up", True), Constant("flat", None), Mixed()], pd.DataFrame())
    direction = frame.set_index("metric")[DIRECTION]
    assert str(frame[DIRECTION].dtype) == "boolean"
    assert direction["up"] is True or bool(direction["up"]) is True
    assert pd.isna(direction["flat"])
    assert [bool(direction[k]) for k in "abc"] == [False, True, True]


def test_a_raising_metric_is_recorded_and_the_others_still_run():
    frame, errors = compute([Broken(), Constant("ok", True)], pd.DataFrame())
    assert list(frame["metric"]) == ["ok"]
    assert "no rows today" in errors["broken"]


def test_every_builtin_metric_declares_its_direction():
    for cls in METRICS:
        assert "higher_is_better" in vars(cls), cls.__name__
        assert cls.higher_is_better in (True, False, None)
