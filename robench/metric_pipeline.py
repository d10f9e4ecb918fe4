"""The metric stages of a run, in one place: per cell, over the results, over the metrics.

:class:`robench.components.Metric` has three stages. The runner calls
:func:`cell_rows` once per trained cell (``from_cell``) and :func:`compute` once the
units are done: every metric's ``from_results`` in the order of ``[metrics] use``, then
every metric's ``from_metrics`` in the same order, each seeing the per-cell rows, all
``from_results`` rows and the ``from_metrics`` rows of the metrics before it.

Every row leaves here with a ``higher_is_better`` column (pandas ``boolean``, missing
where the metric declares no direction): the metric's own column where it wrote one,
else its class attribute. Reporters read the direction from this column only.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - type hints only
    import pandas as pd

    from .components import CellData, Metric

DIRECTION = "higher_is_better"
"""Column of every metric row saying whether a larger value is better for the defender."""


def directed(rows: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """A copy of ``rows`` with :data:`DIRECTION` filled from ``metric.higher_is_better``
    where the metric did not set it itself."""
    import pandas as pd

    rows = rows.copy()
    declared = metric.higher_is_better
    default = pd.array([declared] * len(rows), dtype="boolean")
    if DIRECTION in rows:
        own = pd.array(rows[DIRECTION].astype(object).where(rows[DIRECTION].notna(), None),
                       dtype="boolean")
        rows[DIRECTION] = own.fillna(declared) if declared is not None else own
    else:
        rows[DIRECTION] = default
    return rows


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    import pandas as pd

    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame({"metric": pd.Series(dtype="str"),
                             "value": pd.Series(dtype="float64"),
                             DIRECTION: pd.Series(dtype="boolean")})
    return pd.concat(frames, ignore_index=True)


def cell_rows(metrics: Sequence[Metric], cell: CellData
              ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every metric's ``from_cell`` rows for one cell, with the cell's identity columns
    and :data:`DIRECTION`; and the traceback of each metric that raised, by name (the
    other metrics' rows are kept)."""
    frames, errors = [], {}
    for metric in metrics:
        try:
            rows = metric.from_cell(cell)
        except (Exception, SystemExit):  # sys.exit in a metric is its failure
            errors[metric.name] = traceback.format_exc()
            continue
        if rows is not None and len(rows):
            rows = directed(rows, metric)
            for column, value in cell.cell.items():
                rows[column] = value
            frames.append(rows)
    return _concat(frames), errors


def compute(metrics: Sequence[Metric], results: pd.DataFrame,
            cell_metrics: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The run's metric frame: ``cell_metrics`` (the stored per-cell rows), then every
    metric's ``from_results`` rows, then every metric's ``from_metrics`` rows, in the
    order of ``metrics``; and the traceback of each metric stage that raised, by metric
    name (a metric that raised in one stage still runs the other)."""
    frames: list[Any] = [cell_metrics]
    errors: dict[str, str] = {}

    def run(metric: Metric, stage: str, argument: pd.DataFrame) -> None:
        try:
            rows = getattr(metric, stage)(argument)
        except (Exception, SystemExit):  # sys.exit in a metric is its failure
            errors[metric.name] = errors.get(metric.name, "") + traceback.format_exc()
            return
        if rows is not None and len(rows):
            frames.append(directed(rows, metric))

    for metric in metrics:
        run(metric, "from_results", results)
    for metric in metrics:
        run(metric, "from_metrics", _concat(list(frames)))
    return _concat(frames), errors
