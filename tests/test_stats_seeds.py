"""seed_summary reads the metric rows computed before it (from_metrics), including
per-cell rows it could not recompute, and gives the Student-t interval over seeds."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats

from robench import ConfigError
from robench.options import parse_options
from robench_plugins.metrics.seeds import SeedSummary


def test_seed_summary_of_per_cell_rows_by_hand():
    """weight_l1 of three seeds (a per-cell metric): mean 2, s = 1, half-width
    t(0.95, 2) / sqrt(3); a single seed gives no interval; other rows are ignored."""
    rows = pd.DataFrame([
        dict(dataset="d", model="m", defense="a", seed=s, cell=f"m--a--s{s}",
             metric="weight_l1", value=v) for s, v in enumerate((1.0, 2.0, 3.0))
    ] + [dict(dataset="d", model="m", defense="b", seed=0, cell="m--b--s0",
              metric="weight_l1", value=5.0),
         dict(dataset="d", model="m", defense="a", seed=0, cell="m--a--s0",
              metric="weight_rms", value=9.0)])
    metric = SeedSummary(parse_options(SeedSummary.Options,
                                       {"metrics": ["weight_l1"], "level": 0.9}))
    assert metric.from_results(pd.DataFrame()) is None
    out = metric.from_metrics(rows).set_index("defense")
    assert set(out["metric"]) == {"weight_l1_over_seeds"}
    half = stats.t.ppf(0.95, 2) * 1.0 / 3 ** 0.5
    assert out.loc["a", "value"] == pytest.approx(2.0)
    assert out.loc["a", "upper"] == pytest.approx(2.0 + half)
    assert out.loc["a", "lower"] == pytest.approx(2.0 - half)
    assert out.loc["a", "n_seeds"] == 3
    assert out.loc["b", "n_seeds"] == 1 and pd.isna(out.loc["b", "upper"])


def test_seed_summary_options_and_absent_rows():
    metric = SeedSummary(parse_options(SeedSummary.Options, {"metrics": ["auc"]}))
    assert metric.from_metrics(pd.DataFrame({"metric": ["x"], "value": [1.0],
                                             "seed": [0]})) is None
    with pytest.raises(ConfigError, match="level"):
        parse_options(SeedSummary.Options, {"level": 1.5})
    with pytest.raises(ConfigError, match="at least one"):
        parse_options(SeedSummary.Options, {"metrics": []})
