"""Computations on the tidy per-sample result frame (no model needed).

Private implementation of the result-frame metrics; the metric classes import it inside
their methods so that listing plugins never imports pandas or numpy. Every function takes
the frame described in :data:`robench.results.RESULT_COLUMNS` and returns tidy metric
rows (``metric``, ``value`` plus grouping columns).

Robust accuracy conventions (the cross-paper conventions of docs/experiments.md): a
sample is *robust* at a budget when it was classified correctly clean and is still
classified correctly under the attack (for a targeted attack: under every target tried).
The ``unconditional`` convention averages over every sample, so a misclassified clean
image counts as a failure (Galloway et al. 2018); the ``conditional`` convention
averages over the samples classified correctly when clean (Wen et al. 2020, Table 6
"PGD" rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CELL = ["dataset", "model", "defense", "seed", "cell"]
"""Columns identifying a trained cell."""

ATTACK = ["attack", "threat_model"]
"""Columns identifying an attack sweep within a cell."""

CONVENTIONS = ("unconditional", "conditional")


def or_none(frame: pd.DataFrame) -> pd.DataFrame | None:
    """``frame``, or ``None`` when it has no rows (the metric does not apply)."""
    return frame if len(frame) else None


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
    and ``conditional`` (mean over clean-correct samples; a group without any has no
    conditional row).
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


def sample_areas(samples: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Per-sample normalised area under the 0/1 robust-vs-eps curve on ``grid``.

    The area is linear in the curve, so the mean of these areas is the area under the
    accuracy curve; they are what a bootstrap over samples resamples.
    """
    wide = samples[samples["epsilon"].isin(grid)].pivot_table(
        index="sample", columns="epsilon", values="robust", aggfunc="all").dropna()
    wide = wide.reindex(columns=grid).dropna().astype(float)
    if len(grid) < 2:
        return np.full(len(wide), np.nan)
    return np.trapezoid(wide.to_numpy(), grid, axis=1) / (grid[-1] - grid[0])


def auc(accuracy: pd.DataFrame, *, compare: list[str], num_classes: int | None = None,
        until_chance: bool = False, samples: pd.DataFrame | None = None,
        bootstrap: int = 0, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Normalised area under accuracy-vs-eps on the common grid of compared curves.

    ``accuracy`` holds ``robust_accuracy`` rows (with ``convention``). Curves sharing the
    ``compare`` columns (e.g. dataset, attack, threat model) are compared: each is
    integrated only over the eps values that *every* one of them has (the intersection;
    eps values missing from some curve are dropped and counted in ``note``). With
    ``until_chance`` the grid stops at the first eps where every compared curve is at or
    below chance (``1/num_classes``), as Galloway et al. (2018) sweep. No clean point is added at
    eps = 0: the grid is the attack's, and a grid that starts at 0 contributes the
    accuracy measured at 0 (the clean accuracy, since a zero budget changes nothing).
    With ``bootstrap > 0`` and the per-sample table ``samples`` (:func:`robust_samples`),
    ``lower``/``upper`` bootstrap the per-sample areas (:func:`sample_areas`).
    """
    curve_keys = CELL + ATTACK + ["convention"]
    members = [c for c in curve_keys if c not in compare + ["convention"]]
    per_curve = dict(iter(samples.groupby(CELL + ATTACK, sort=False, dropna=False))) \
        if bootstrap > 0 and samples is not None else {}
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
                       n_eps=len(grid), note="; ".join(notes))
            if per_curve:
                mine = per_curve[curve_key[:-1]]
                if row["convention"] == "conditional":
                    mine = mine[mine["correct_clean"]]
                row["lower"], row["upper"] = bootstrap_interval(
                    sample_areas(mine, grid), resamples=bootstrap, level=level, seed=seed)
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
            rows.append({**base, "metric": "median_distance", "value": float(np.median(values)),
                         "higher_is_better": True})
            rows.append({**base, "metric": "adversarial_found",
                         "value": float(np.isfinite(values).mean()), "higher_is_better": False})
    return pd.DataFrame(rows)


def _attack_order(attacks: list[str], order: tuple[str, ...]) -> list[str]:
    """``attacks`` with those named in ``order`` first (in that order), then the rest in
    their order of appearance."""
    first = [a for a in order if a in attacks]
    return first + [a for a in attacks if a not in first]


def worst_case_samples(results: pd.DataFrame, order: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per (cell, threat model, eps, sample): robust against every attack of the threat model?

    Within a cell, the attacks sharing a threat model are combined on the eps values and
    samples that *all* of them have (the intersection). A sample is robust only when it
    is clean-correct and every attack failed (AutoAttack's ensemble accuracy).
    ``broken_by`` names the first attack (``order`` first, then order of appearance)
    that broke it, ``"(clean)"`` for a sample misclassified when clean, ``""`` if robust;
    ``broken_by_all`` lists every attack that broke it, comma-separated. ``attacks``
    lists the combined attacks.
    """
    samples = robust_samples(results)
    if samples.empty:
        return pd.DataFrame()
    appearance = list(pd.unique(data_rows(results)["attack"]))
    frames = []
    for key, group in samples.groupby(CELL + ["threat_model"], sort=True, dropna=False):
        present = set(group["attack"].unique())
        attacks = _attack_order([a for a in appearance if a in present], order)
        wide = group.pivot_table(index=["epsilon", "sample"], columns="attack",
                                 values="robust", aggfunc="all").dropna()
        if wide.empty:
            continue
        wide = wide[attacks].astype(bool)
        clean = group.groupby("sample")["correct_clean"].all()
        out = wide.reset_index()[["epsilon", "sample"]]
        out["correct_clean"] = clean.reindex(out["sample"]).to_numpy()
        out["robust"] = wide.all(axis=1).to_numpy() & out["correct_clean"].to_numpy()
        broken = ~wide.to_numpy()
        names = np.array(attacks, dtype=object)
        out["broken_by"] = np.where(broken.any(axis=1), names[broken.argmax(axis=1)], "")
        out.loc[~out["correct_clean"], "broken_by"] = "(clean)"
        codes = broken @ (1 << np.arange(len(attacks)))
        patterns = {c: ",".join(names[(c >> np.arange(len(attacks))) & 1 == 1])
                    for c in np.unique(codes)}
        out["broken_by_all"] = pd.Series(codes).map(patterns).to_numpy()
        out["attacks"] = ",".join(attacks)
        for col, value in zip(CELL + ["threat_model"], key):
            out[col] = value
        frames.append(out)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)[
        CELL + ["threat_model", "epsilon", "sample", "correct_clean", "robust", "broken_by",
                "broken_by_all", "attacks"]]


def worst_case(results: pd.DataFrame, *, order: tuple[str, ...] = (), per_sample: bool = False,
               bootstrap: int = 0, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Worst case over the attacks of each threat model (see :func:`worst_case_samples`).

    Rows: ``worst_case_accuracy`` per (cell, threat model, eps, convention) with
    ``attack = "worst_case"`` and the combined attacks in ``note``; ``worst_case_auc``,
    the :func:`auc` of that curve on the grid common to the cells of the data set; per
    attack,
    ``broken_first`` (fraction of samples whose first breaking attack it is) and
    ``broken_only`` (fraction that only it broke), with the fraction's denominator
    following the convention; with ``per_sample``, one ``worst_case_robust`` row (0/1)
    per sample and eps with its ``broken_by`` attack.
    """
    table = worst_case_samples(results, order)
    if table.empty:
        return pd.DataFrame()
    keys = CELL + ["threat_model", "epsilon"]
    acc = accuracy_from_samples(table, keys, "worst_case_accuracy", bootstrap=bootstrap,
                                level=level, seed=seed)
    acc["attack"] = "worst_case"
    acc = acc.merge(table.drop_duplicates(keys)[keys + ["attacks"]], on=keys)
    acc["note"] = "attacks: " + acc.pop("attacks")
    area = auc(acc, compare=["dataset", "attack", "threat_model"],
               samples=table.assign(attack="worst_case"), bootstrap=bootstrap, level=level,
               seed=seed)
    area["metric"] = "worst_case_auc"
    acc["higher_is_better"] = area["higher_is_better"] = True
    frames = [acc, area]
    per_attack = pd.concat([part.assign(attack=attack)
                            for combo, part in table.groupby("attacks", sort=False)
                            for attack in combo.split(",")], ignore_index=True)
    per_attack["broken_first"] = per_attack["broken_by"] == per_attack["attack"]
    per_attack["broken_only"] = ((per_attack["broken_by_all"] == per_attack["attack"])
                                 & per_attack["correct_clean"])
    for convention in CONVENTIONS:
        part = per_attack if convention == "unconditional" else \
            per_attack[per_attack["correct_clean"]]
        agg = part.groupby(keys + ["attack"], sort=True, dropna=False).agg(
            broken_first=("broken_first", "mean"), broken_only=("broken_only", "mean"),
            n=("sample", "size")).reset_index()
        rows = agg.melt(id_vars=keys + ["attack", "n"], var_name="metric", value_name="value")
        rows["convention"] = convention
        frames.append(rows)
    if per_sample:
        samples = table.drop(columns=["broken_by_all", "attacks"]).copy()
        samples["metric"] = "worst_case_robust"
        samples["value"] = samples.pop("robust").astype(float)
        samples["attack"] = "worst_case"
        samples["higher_is_better"] = True
        frames.append(samples.drop(columns=["correct_clean"]))
    return pd.concat(frames, ignore_index=True)


def fooling(results: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Fooling-image metrics per (cell, attack, eps) over the generated-noise rows.

    Galloway et al. (2018), section 6.1: ``fooling_success`` = fraction of (input,
    target) pairs whose argmax is the target (the host's ``success``);
    ``fooling_success_threshold`` = fraction whose target probability also exceeds
    ``threshold`` (the adversarial prediction is the target and its ``confidence``, the
    softmax probability of the prediction, is above it); ``fooling_margin`` = mean
    difference of the two largest softmax probabilities; ``fooling_confidence`` = mean
    probability of the predicted class. Inputs over budget (NaN confidence) count as
    failures and are left out of the means of margin and confidence.
    """
    noise = results[results["source"] == "noise"] if "source" in results.columns else results[:0]
    if noise.empty:
        return pd.DataFrame()
    frame = noise.copy()
    frame["success"] = frame["success"].astype(bool)
    frame["over"] = frame["success"] & (frame["confidence"].fillna(0.0) > threshold)
    keys = CELL + ATTACK + ["epsilon"]
    agg = frame.groupby(keys, sort=True, dropna=False).agg(
        fooling_success=("success", "mean"), fooling_success_threshold=("over", "mean"),
        fooling_margin=("margin", "mean"), fooling_confidence=("confidence", "mean"),
        n=("success", "size")).reset_index()
    out = agg.melt(id_vars=keys + ["n"], var_name="metric", value_name="value")
    out["threshold"] = np.where(out["metric"] == "fooling_success_threshold", threshold, np.nan)
    return out


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Mean of ``values`` (one per seed; NaN left out) and the half-width of its Student-t
    interval at ``level``: ``t * s / sqrt(k)``; NaN for a single value or an infinite one."""
    from scipy import stats

    values = np.asarray(values, dtype="float64")
    values = values[~np.isnan(values)]
    k = len(values)
    if k == 0:
        return float("nan"), float("nan")
    mean = float(np.mean(values))
    if k == 1 or not np.isfinite(values).all():
        return mean, float("nan")
    std = float(np.std(values, ddof=1))
    return mean, float(stats.t.ppf((1 + level) / 2, k - 1) * std / np.sqrt(k))


def over_seeds(metrics: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean and Student-t interval over seeds of every metric row group.

    Rows that differ only in ``seed`` and ``cell`` (and their ``value``, ``lower``,
    ``upper``, ``n``, ``note``) are one group; the result has ``metric`` suffixed with
    ``_over_seeds``, ``value`` = mean over seeds, ``lower``/``upper`` = mean -+ the
    :func:`t_interval` half-width at ``level`` (NaN with a single seed), ``std`` and
    ``n_seeds`` = k (seeds with a value); ``seed`` is missing (NA) and ``cell`` lists the
    cells averaged.
    """
    if metrics.empty:
        return pd.DataFrame()
    drop = {"seed", "cell", "value", "lower", "upper", "n", "note"}
    keys = [c for c in metrics.columns if c not in drop]
    rows = []
    for key, group in metrics.groupby(keys, sort=True, dropna=False):
        values = group["value"].to_numpy(dtype="float64")
        mean, half = t_interval(values, level)
        finite = values[~np.isnan(values)]
        row = dict(zip(keys, key))
        row.update(metric=f"{row['metric']}_over_seeds", value=mean, lower=mean - half,
                   upper=mean + half,
                   std=float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
                   n_seeds=len(finite))
        if "cell" in group.columns:
            row["cell"] = ",".join(sorted(set(map(str, group["cell"]))))
        rows.append(row)
    out = pd.DataFrame(rows)
    out["seed"] = pd.array([pd.NA] * len(out), dtype="Int64")
    return out


def attack_success(results: pd.DataFrame) -> pd.DataFrame:
    """Attack success rate and perturbation size per (cell, attack, eps), over attempts.

    Galloway et al. (2018), section 6.3.2, Table 2: an attempt is one (sample, target)
    row of the data inputs (misclassified sources are not skipped). ``success_rate`` =
    fraction of successful attempts (the host's ``success``: targeted, the target was
    reached; untargeted, the label changed); ``mean_distance`` = mean host-measured
    distance over all attempts, ``mean_distance_success`` over the successful ones (NaN
    if none). For L0 attacks the distance is the fraction of input values changed.
    """
    data = data_rows(results)
    if data.empty:
        return pd.DataFrame()
    frame = data.assign(success=data["success"].astype(bool))
    frame["distance_success"] = frame["distance"].where(frame["success"])
    keys = CELL + ATTACK + ["epsilon"]
    agg = frame.groupby(keys, sort=True, dropna=False).agg(
        success_rate=("success", "mean"), mean_distance=("distance", "mean"),
        mean_distance_success=("distance_success", "mean"),
        n=("success", "size")).reset_index()
    out = agg.melt(id_vars=keys + ["n"], var_name="metric", value_name="value")
    out["higher_is_better"] = out["metric"] != "success_rate"  # larger distances: better
    return out
