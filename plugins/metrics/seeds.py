"""Mean and confidence interval over seeds of metric rows computed before."""

from __future__ import annotations

import dataclasses

from robench import Metric


@dataclasses.dataclass(frozen=True)
class SeedSummaryOptions:
    metrics: tuple[str, ...] = dataclasses.field(
        default=("clean_accuracy", "robust_accuracy", "auc", "worst_case_auc"),
        metadata={"help": "names of the metric rows (their `metric` column) to aggregate "
                          "over seeds; the metrics producing them must be in [metrics] use"})
    level: float = dataclasses.field(
        default=0.95, metadata={"help": "confidence level of the Student-t interval"})

    def __post_init__(self):
        if not self.metrics:
            raise ValueError("metrics must name at least one metric row to summarise")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")


class SeedSummary(Metric):
    """Mean +- Student-t confidence interval over seeds of metric rows computed before.

    "A result is a distribution over seeds where more than one seed was run: mean and a
    confidence interval." Reads the rows of the metrics of the run (``from_metrics``:
    per-cell rows such as ``weight_l1`` and every result-frame metric's rows) whose
    ``metric`` is in ``metrics``, and groups rows that differ only by seed (and cell id).
    Rows are named ``<metric>_over_seeds`` with ``value`` (mean), ``lower``/``upper``
    (t-interval; NaN for a single seed), ``std`` and ``n_seeds``. The interval is over
    seeds only; intervals over samples come from the metrics' own ``bootstrap`` option,
    and paired differences between configurations from ``paired_difference``.
    """

    name = "seed_summary"
    higher_is_better = None  # each row keeps the direction of the metric it summarises
    Options = SeedSummaryOptions

    def from_metrics(self, metrics):
        import pandas as pd

        from . import _tables

        if "seed" not in metrics.columns:
            return None
        frames = []
        for name in self.options.metrics:
            rows = metrics[(metrics["metric"] == name) & metrics["seed"].notna()]
            if len(rows):
                rows = rows.dropna(axis=1, how="all")
                frames.append(_tables.over_seeds(rows, self.options.level))
        return pd.concat(frames, ignore_index=True) if frames else None
