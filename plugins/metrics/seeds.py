"""Mean and confidence interval over seeds of the result-frame metrics."""

from __future__ import annotations

import dataclasses

from robench import Metric

SUMMARISED = ("attack_success", "auc", "breakdown_point", "clean_accuracy", "fooling",
              "median_distance", "robust_accuracy", "worst_case")
"""Built-in result-frame metrics that ``seed_summary`` can aggregate."""


@dataclasses.dataclass(frozen=True)
class SeedSummaryOptions:
    metrics: tuple[str, ...] = dataclasses.field(
        default=("clean_accuracy", "robust_accuracy", "auc", "worst_case"),
        metadata={"help": f"metrics to aggregate over seeds, among {list(SUMMARISED)}"})
    level: float = dataclasses.field(
        default=0.95, metadata={"help": "confidence level of the Student-t interval"})

    def __post_init__(self):
        unknown = sorted(set(self.metrics) - set(SUMMARISED))
        if unknown:
            raise ValueError(f"metrics: cannot summarise {unknown}; choose from {list(SUMMARISED)}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")


class SeedSummary(Metric):
    """Mean +- Student-t confidence interval over seeds of the result-frame metrics.

    the cross-paper conventions of docs/protocols.md: "a result is a distribution over seeds where
    more than one seed was run: mean and a confidence interval".

    Computes each metric in ``metrics`` with its default options, then groups rows that
    differ only by seed (and cell id). Rows are named ``<metric>_over_seeds`` with
    ``value`` (mean), ``lower``/``upper`` (t-interval; NaN for a single seed), ``std``
    and ``n_seeds``. The interval is over seeds only; intervals over samples come from
    the metrics' own ``bootstrap`` option.
    """

    name = "seed_summary"
    higher_is_better = None  # each row keeps the direction of the metric it summarises
    Options = SeedSummaryOptions

    def from_results(self, results):
        import pandas as pd

        from . import _tables
        from .accuracy import (
            AUC,
            AttackSuccess,
            BreakdownPoint,
            CleanAccuracy,
            MedianDistance,
            RobustAccuracy,
        )
        from .fooling import Fooling
        from .worst_case import WorstCase

        classes = {c.name: c for c in (AUC, AttackSuccess, BreakdownPoint, CleanAccuracy,
                                       Fooling, MedianDistance, RobustAccuracy, WorstCase)}
        frames = []
        for name in self.options.metrics:
            rows = classes[name]().from_results(results)
            if rows is not None and len(rows):
                frames.append(_tables.over_seeds(rows, self.options.level))
        return pd.concat(frames, ignore_index=True) if frames else None
