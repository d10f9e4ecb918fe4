"""Computations on the tidy per-sample result frame (no model needed).

Private implementation of the result-frame metrics; the metric classes import it inside
their methods so that listing plugins never imports pandas or numpy. Every function takes
the frame described in :data:`robench.results.RESULT_COLUMNS` and returns tidy metric
rows (``metric``, ``value`` plus grouping columns).

Robust accuracy conventions (PROTOCOLS "Cross-paper conventions"): a sample is *robust*
at a budget when it was classified correctly clean and is still classified correctly
under the attack (for a targeted attack: under every target tried). The
``unconditional`` convention averages over every sample, so a misclassified clean image
counts as a failure (paper 000); the ``conditional`` convention averages over the samples
classified correctly when clean (paper 003, Table 6 "PGD" rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CELL = ["dataset", "model", "defense", "seed", "cell"]
"""Columns identifying a trained cell."""

ATTACK = ["attack", "threat_model"]
"""Columns identifying an attack sweep within a cell."""

CONVENTIONS = ("unconditional", "conditional")


def data_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Rows whose input came from the data set (``source == "data"``), not generated noise."""
    if "source" not in results.columns:
        return results
    return results[results["source"] == "data"]


def infer_num_classes(results: pd.DataFrame) -> int:
    """Number of classes as seen in the frame: 1 + the largest label or prediction.

    The result frame does not record the data set's class count; this is a lower bound
    that is exact whenever the last class occurs among the labels or predictions.
    """
    cols = [c for c in ("label", "pred_clean", "pred_adv", "target") if c in results.columns]
    largest = max(int(pd.to_numeric(results[c], errors="coerce").max()) for c in cols
                  if results[c].notna().any())
    return largest + 1


def bootstrap_interval(values: np.ndarray, *, resamples: int, level: float,
                       seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (scipy.stats.bootstrap).

    Constant samples (every value equal, or a single value) give the degenerate interval
    ``[mean, mean]``; an empty sample gives NaNs.
    """
    from scipy import stats

    values = np.asarray(values, dtype="float64")
    if len(values) == 0:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=level,
                          method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _mean_rows(frame: pd.DataFrame, keys: list[str], column: str, metric: str, *,
               bootstrap: int, level: float, seed: int) -> pd.DataFrame:
    """Mean of boolean/numeric ``column`` per ``keys`` group, with ``n`` and an optional
    bootstrap interval (``lower``/``upper``) over the group's rows."""
    rows = []
    for key, group in frame.groupby(keys, sort=True, dropna=False):
        values = group[column].to_numpy(dtype="float64")
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row.update(metric=metric, value=float(values.mean()) if len(values) else float("nan"),
                   n=len(values))
        if bootstrap > 0:
            row["lower"], row["upper"] = bootstrap_interval(values, resamples=bootstrap,
                                                            level=level, seed=seed)
        rows.append(row)
    return pd.DataFrame(rows)


def clean_samples(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, sample) of the data rows, with ``correct_clean``.

    Different attacks of a cell may share samples; each sample counts once.
    """
    data = data_rows(results)
    return data.drop_duplicates(CELL + ["sample"])[CELL + ["sample", "correct_clean"]]


def clean_accuracy(results: pd.DataFrame, *, bootstrap: int = 0, level: float = 0.95,
                   seed: int = 0) -> pd.DataFrame:
    """Clean accuracy per cell: mean of ``pred_clean == label`` over distinct samples."""
    samples = clean_samples(results)
    if samples.empty:
        return pd.DataFrame()
    return _mean_rows(samples, CELL, "correct_clean", "clean_accuracy",
                      bootstrap=bootstrap, level=level, seed=seed)


def robust_samples(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, attack, epsilon, sample) of the data rows.

    Columns: the keys, ``correct_clean`` and ``robust`` (clean-correct and still correct
    under the attack; for targeted attacks, under every target tried).
    """
    data = data_rows(results)
    keys = CELL + ATTACK + ["epsilon", "sample"]
    frame = data[keys + ["correct_clean", "correct_adv"]].copy()
    frame["robust"] = frame["correct_clean"].astype(bool) & frame["correct_adv"].astype(bool)
    out = frame.groupby(keys, sort=True, dropna=False).agg(
        correct_clean=("correct_clean", "all"), robust=("robust", "all"))
    return out.reset_index()


def accuracy_from_samples(samples: pd.DataFrame, keys: list[str], metric: str, *,
                          bootstrap: int = 0, level: float = 0.95,
                          seed: int = 0) -> pd.DataFrame:
    """Both conventions of robust accuracy from per-sample ``robust``/``correct_clean``.

    Returns rows with a ``convention`` column: ``unconditional`` (mean over all samples)
    and ``conditional`` (mean over clean-correct samples; NaN when there are none).
    """
    frames = []
    for convention in CONVENTIONS:
        part = samples if convention == "unconditional" else samples[samples["correct_clean"]]
        rows = _mean_rows(part, keys, "robust", metric, bootstrap=bootstrap, level=level,
                          seed=seed)
        if rows.empty:
            continue
        rows["convention"] = convention
        frames.append(rows)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def robust_accuracy(results: pd.DataFrame, *, bootstrap: int = 0, level: float = 0.95,
                    seed: int = 0) -> pd.DataFrame:
    """Robust accuracy per (cell, attack, epsilon) in both conventions (``convention``)."""
    samples = robust_samples(results)
    if samples.empty:
        return pd.DataFrame()
    return accuracy_from_samples(samples, CELL + ATTACK + ["epsilon"], "robust_accuracy",
                                 bootstrap=bootstrap, level=level, seed=seed)


def common_grid(curves: pd.DataFrame, members: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The eps values present in every compared curve, and those some curve lacks.

    ``curves`` has one row per (member, epsilon); ``members`` are the columns that tell
    the compared curves apart.
    """
    per_curve = [set(g["epsilon"]) for _, g in curves.groupby(members, sort=False, dropna=False)]
    common = set.intersection(*per_curve)
    union = set.union(*per_curve)
    return np.array(sorted(common)), np.array(sorted(union - common))


def normalised_area(eps: np.ndarray, accuracy: np.ndarray) -> float:
    """Trapezoid area under ``accuracy`` over ``eps`` divided by the eps range.

    A curve at 1 everywhere scores 1.0; fewer than two points (no range) give NaN.
    """
    if len(eps) < 2 or eps[-1] <= eps[0]:
        return float("nan")
    return float(np.trapezoid(accuracy, eps) / (eps[-1] - eps[0]))


def auc(accuracy: pd.DataFrame, *, compare: list[str], num_classes: int | None = None,
        until_chance: bool = False) -> pd.DataFrame:
    """Normalised area under accuracy-vs-eps on the common grid of compared curves.

    ``accuracy`` holds ``robust_accuracy`` rows (with ``convention``). Curves sharing the
    ``compare`` columns (e.g. dataset, attack, threat model) are compared: each is
    integrated only over the eps values that *every* one of them has (the intersection;
    eps values missing from some curve are dropped and counted in ``note``). With
    ``until_chance`` the grid stops at the first eps where every compared curve is at or
    below chance (``1/num_classes``), as PROTOCOLS A3 sweeps. No clean point is added at
    eps = 0: the grid is the attack's, and a grid that starts at 0 contributes the
    accuracy measured at 0 (the clean accuracy, since a zero budget changes nothing).
    """
    curve_keys = CELL + ATTACK + ["convention"]
    members = [c for c in curve_keys if c not in compare + ["convention"]]
    rows = []
    for _, group in accuracy.groupby(compare + ["convention"], sort=True, dropna=False):
        grid, dropped = common_grid(group, members)
        if until_chance and len(grid):
            chance = 1.0 / num_classes
            at_grid = group[group["epsilon"].isin(grid)]
            worst = at_grid.groupby("epsilon")["value"].max().reindex(grid)
            reached = np.flatnonzero(worst.to_numpy() <= chance + 1e-12)
            if len(reached):
                grid = grid[:reached[0] + 1]
        notes = []
        if len(dropped):
            notes.append(f"{len(dropped)} eps value(s) not shared by every compared curve "
                         f"were dropped")
        if len(grid) < 2:
            notes.append("common grid has fewer than two eps values")
        for curve_key, curve in group.groupby(curve_keys, sort=True, dropna=False):
            curve = curve[curve["epsilon"].isin(grid)].sort_values("epsilon")
            row = dict(zip(curve_keys, curve_key))
            row.update(metric="auc", value=normalised_area(curve["epsilon"].to_numpy(),
                                                           curve["value"].to_numpy()),
                       eps_min=float(grid[0]) if len(grid) else float("nan"),
                       eps_max=float(grid[-1]) if len(grid) else float("nan"),
                       n=len(grid), note="; ".join(notes))
            rows.append(row)
    return pd.DataFrame(rows)


def breakdown_point(accuracy: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """First eps of each robust-accuracy curve whose accuracy is at or below chance.

    Chance is ``1/num_classes``. A curve that never gets there has NaN and a note giving
    the largest eps tried. The value is a grid point, not interpolated between points.
    """
    chance = 1.0 / num_classes
    keys = CELL + ATTACK + ["convention"]
    rows = []
    for key, curve in accuracy.groupby(keys, sort=True, dropna=False):
        curve = curve.sort_values("epsilon")
        hit = curve[curve["value"] <= chance + 1e-12]
        row = dict(zip(keys, key))
        row.update(metric="breakdown_eps", chance=chance,
                   value=float(hit["epsilon"].iat[0]) if len(hit) else float("nan"),
                   note="" if len(hit) else
                   f"accuracy stays above chance up to eps={curve['epsilon'].max():g}")
        rows.append(row)
    return pd.DataFrame(rows)


def minimal_distances(results: pd.DataFrame) -> pd.DataFrame:
    """The smallest adversarial distance the sweep found, per (cell, attack, sample, target).

    An attempt's distance is the smallest host-measured ``distance`` among its successful
    rows (over every eps). Untargeted attempts on a sample misclassified when clean have
    distance 0 (the clean input is already adversarial); attempts that never succeeded
    have ``inf``. For fixed-budget attacks this is an upper bound on the true minimal
    distance; for minimal-perturbation attacks it is the attack's own estimate.
    """
    data = data_rows(results)
    keys = CELL + ATTACK + ["sample", "target"]
    frame = data[keys + ["success", "distance", "correct_clean"]].copy()
    frame["found"] = np.where(frame["success"].astype(bool), frame["distance"], np.inf)
    out = frame.groupby(keys, sort=True, dropna=False).agg(
        distance=("found", "min"), correct_clean=("correct_clean", "all")).reset_index()
    untargeted = out["target"].isna().to_numpy()
    out.loc[untargeted & ~out["correct_clean"].to_numpy(), "distance"] = 0.0
    return out


def median_distance(results: pd.DataFrame) -> pd.DataFrame:
    """Median minimal adversarial distance per (cell, attack), both conventions.

    ``unconditional``: over every attempt (misclassified clean samples at 0);
    ``conditional``: over attempts on clean-correct samples. Attempts with no adversarial
    count as ``inf``, so the median is ``inf`` when most samples resisted; the fraction
    of attempts with an adversarial is given as metric ``adversarial_found``.
    """
    dist = minimal_distances(results)
    if dist.empty:
        return pd.DataFrame()
    keys = CELL + ATTACK
    rows = []
    for convention in CONVENTIONS:
        part = dist if convention == "unconditional" else dist[dist["correct_clean"]]
        for key, group in part.groupby(keys, sort=True, dropna=False):
            values = group["distance"].to_numpy()
            base = dict(zip(keys, key), convention=convention, n=len(values))
            rows.append({**base, "metric": "median_distance", "value": float(np.median(values))})
            rows.append({**base, "metric": "adversarial_found",
                         "value": float(np.isfinite(values).mean())})
    return pd.DataFrame(rows)
