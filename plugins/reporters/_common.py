"""Helpers shared by the built-in reporters: group labels, colours, eps units, figures.

Everything here reads stored frames only (never torch). Figures are created as plain
:class:`matplotlib.figure.Figure` objects, which always draw with the Agg canvas: no
pyplot state and no global backend switch (a notebook's backend stays as it was).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

GROUP_KEYS = ("dataset", "model", "defense")
"""Cell columns that identify a compared configuration (seeds are pooled over)."""

HIGHER_IS_BETTER_PREFIXES = ("clean_accuracy", "robust_accuracy", "auc", "worst_case",
                             "accuracy", "breakdown", "median_distance")
"""Metric names (by prefix) where a larger value is better for the defender."""

LOWER_IS_BETTER_PREFIXES = ("ge_gap", "loss_gap", "fooling", "success_rate",
                            "attack_success", "adversarial_found")
"""Metric names (by prefix) where a smaller value is better for the defender."""

AXIS_COLUMNS = ("epsilon", "lambda", "gamma", "budget", "rank", "index", "quantile",
                "bin_left", "bin", "feature", "k", "step", "epoch")
"""Columns that put metric rows along an x axis (a curve, spectrum or histogram), in
order of preference; rows with none of them (and no ``layer``) are scalars."""

DESCRIPTIVE_COLUMNS = ("metric", "value", "lower", "upper", "std", "note", "dataset", "model",
                       "defense", "seed", "cell", "group", "attack_component", "library",
                       "library_version", "eps_min", "eps_max", "chance", "threshold",
                       "bin_right")
"""Metric columns that describe a value rather than tell two series apart."""


def is_count(column: str) -> bool:
    """Sample/point counts (``n``, ``n_eps``, ...) describe a value; they do not name it."""
    return column == "n" or column.startswith("n_")


def usable_metrics(metrics):
    """Metric rows a report draws: per-seed rows (``*_over_seeds`` aggregates are left
    out, the report computes the same mean and t-interval itself) and no per-sample
    rows (those with a ``sample`` column)."""
    if not len(metrics):
        return metrics
    keep = ~metrics["metric"].astype(str).str.endswith("_over_seeds")
    if "sample" in metrics:
        keep &= metrics["sample"].isna()
    return metrics[keep]


def better_direction(metric: str) -> int:
    """+1 when larger ``metric`` values are better, -1 when smaller are, 0 if unknown."""
    if metric.startswith(HIGHER_IS_BETTER_PREFIXES):
        return 1
    if metric.startswith(LOWER_IS_BETTER_PREFIXES):
        return -1
    return 0


# ----------------------------------------------------------------------- run metadata


def data_info(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``data`` block of run.json, with ``eps_scale`` defaulting to 1."""
    info = dict(record.get("data") or {})
    info["eps_scale"] = info.get("eps_scale") or 1
    return info


def cell_table(record: Mapping[str, Any]):
    """One row per cell of run.json: cell id, dataset, model, defense, seed, status."""
    import pandas as pd

    rows = []
    for cell_id, rec in (record.get("cells") or {}).items():
        cell = dict(rec.get("cell") or {})
        cell["cell"] = cell_id
        cell["status"] = rec.get("status")
        rows.append(cell)
    return pd.DataFrame(rows, columns=["cell", *GROUP_KEYS, "seed", "status"])


def group_keys(record: Mapping[str, Any]) -> list[str]:
    """The cell columns that vary across this run's cells (``model, defense`` when none
    does).

    Labels built from them stay short ("l2" rather than "digits / mlp / l2") while
    every distinct configuration keeps a distinct label.
    """
    cells = cell_table(record)
    keys = [k for k in GROUP_KEYS if k in cells and cells[k].nunique(dropna=True) > 1]
    return keys or ["model", "defense"]


def add_group(frame, keys: Iterable[str], column: str = "group"):
    """A copy of ``frame`` with a ``group`` column joining ``keys`` with " / "."""
    frame = frame.copy()
    keys = [k for k in keys if k in frame]
    if not keys:
        frame[column] = "all"
        return frame
    frame[column] = frame[keys].astype(str).agg(" / ".join, axis=1)
    return frame


def group_order(record: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """Every group label of the run's cells, in the order the run lists its cells (the
    experiment file's order of models and defenses)."""
    cells = add_group(cell_table(record), keys)
    return list(dict.fromkeys(cells["group"])) if len(cells) else []


def runs_groups(records: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """For several runs' records: the group keys that vary across all their cells and
    every group label, in the order the runs list their cells."""
    import pandas as pd

    cells = pd.concat([cell_table(r) for r in records], ignore_index=True)
    keys = [k for k in GROUP_KEYS if cells[k].nunique(dropna=True) > 1] or ["model", "defense"]
    order = list(dict.fromkeys(add_group(cells, keys)["group"])) if len(cells) else []
    return keys, order


def palette(labels: Iterable[str]) -> dict[str, Any]:
    """A colour-blind-safe colour per label, assigned in the given order (pass the run's
    group order so every figure of a report colours a configuration alike)."""
    import seaborn as sns

    labels = list(dict.fromkeys(labels))
    colours = sns.color_palette("colorblind", max(len(labels), 1))
    if len(labels) > len(colours):
        colours = sns.color_palette("husl", len(labels))
    return dict(zip(labels, colours))


# --------------------------------------------------------------------------- eps units


def eps_unit(threat_model: str | None, eps_scale: float) -> tuple[float, str]:
    """How to show a budget: (multiplier, suffix) so that ``eps * multiplier`` + suffix
    reads naturally.

    L-inf budgets and the step sizes of unbounded attacks are shown as ``k/255`` for
    8-bit images (``k/16`` for scikit-learn digits), i.e. in the data set's
    ``eps_scale``; L0 budgets are fractions of the input values, shown in percent;
    L2/L1 budgets keep their raw values.
    """
    if threat_model == "l0":
        return 100.0, "%"
    if threat_model in ("linf", "unbounded") and eps_scale and eps_scale > 1:
        return float(eps_scale), f"/{eps_scale:g}"
    return 1.0, ""


def format_eps(eps: float, threat_model: str | None, eps_scale: float) -> str:
    """One budget in natural units: ``"8/255"``, ``"26%"``, ``"0.5"``."""
    mult, suffix = eps_unit(threat_model, eps_scale)
    value = float(eps) * mult
    if value == 0:
        return "0"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    rounded = round(value)
    text = f"{rounded:d}" if math.isclose(value, rounded, rel_tol=1e-6, abs_tol=1e-9) \
        else f"{value:.3g}"
    return text + suffix


def eps_axis_label(threat_model: str | None, eps_scale: float) -> str:
    """Axis label of a budget axis drawn in :func:`eps_unit` units."""
    if threat_model == "l0":
        return "input values changed (%)"
    mult, suffix = eps_unit(threat_model, eps_scale)
    name = {"linf": "L∞ ε", "l2": "L2 ε", "l1": "L1 ε", "unbounded": "step ε"}.get(
        threat_model or "", "ε")
    return f"{name} (×1{suffix})" if suffix else name


def eps_phrase(eps: float, threat_model: str | None, eps_scale: float) -> str:
    """A budget in words, for sentences: "at 26% of input values changed", "at ε = 8/255"."""
    if threat_model == "l0":
        return f"at {format_eps(eps, threat_model, eps_scale)} of input values changed"
    return f"at ε = {format_eps(eps, threat_model, eps_scale)}"


def midpoint(grid: Iterable[float]) -> float:
    """The grid value closest to the middle of the grid's range (ties: the smaller)."""
    values = np.unique(np.asarray(list(grid), dtype=float))
    middle = (values.min() + values.max()) / 2
    return float(values[np.argmin(np.abs(values - middle))])


# ----------------------------------------------------------------------------- frames


def accuracy_curves(results):
    """Per (dataset, model, defense, seed, attack, epsilon): the curve statistic.

    Untargeted attacks on data inputs give the robust accuracy (unconditional: a sample
    misclassified when clean counts as broken, Galloway et al.'s convention) and the accuracy
    conditional on clean-correct samples (Wen et al.'s). Targeted attacks and attacks on
    generated inputs give the attack success rate instead. Columns: the cell columns,
    ``attack, threat_model, epsilon, statistic, value, conditional, n``.
    """
    import pandas as pd

    if len(results) == 0:
        return pd.DataFrame(columns=[*GROUP_KEYS, "seed", "attack", "threat_model",
                                     "epsilon", "statistic", "value", "conditional", "n"])
    frame = pd.DataFrame({key: results[key] for key in
                          [*GROUP_KEYS, "seed", "attack", "threat_model", "epsilon"]})
    targeted = results["target"].notna() if "target" in results else False
    noise = results["source"].ne("data") if "source" in results else False
    frame["_rate"] = targeted | noise
    frame["_success"] = results["success"].astype(float)
    frame["_correct"] = results["correct_adv"].astype(float)
    frame["_conditional"] = frame["_correct"].where(results["correct_clean"].astype(bool))
    keys = [*GROUP_KEYS, "seed", "attack", "threat_model", "epsilon"]
    agg = frame.groupby(keys, sort=True, dropna=False).agg(
        rate=("_rate", "any"), success=("_success", "mean"), correct=("_correct", "mean"),
        conditional=("_conditional", "mean"), n=("_correct", "size")).reset_index()
    rate = agg.pop("rate").astype(bool)
    agg["statistic"] = np.where(rate, "attack success rate", "accuracy")
    agg["value"] = np.where(rate, agg.pop("success"), agg.pop("correct"))
    agg.loc[rate, "conditional"] = np.nan
    return agg[[*keys, "statistic", "value", "conditional", "n"]]


def t_interval(values) -> tuple[float, float]:
    """95% t-interval of the mean of ``values`` (seeds), as seaborn's ``errorbar``
    callable: the same interval the summary table reports, and no bootstrap cost."""
    mean, half = seeds_summary(values)
    half = 0.0 if half is None else half
    return mean - half, mean + half


def seed_errorbar(n_seeds: int):
    """seaborn ``errorbar`` for bands over ``n_seeds`` seeds, and its description.

    Three or more seeds: the 95% t-interval of the mean (as in the summary table). Two
    seeds: the range between them (a 95% t-interval from two values spans 25 times their
    distance and would hide every curve). One seed: no band.
    """
    if n_seeds >= 3:
        return t_interval, "95% t-interval of the mean over seeds"
    if n_seeds == 2:
        return ("pi", 100), "range between the two seeds"
    return None, ""


def hue_column(frame, keys) -> tuple[Any, str]:
    """``(frame, name)``: the group labels under a readable column name for legends
    ("defense", "model / defense")."""
    name = " / ".join(k for k in keys if k in frame) or "group"
    if name not in frame:
        frame = frame.assign(**{name: frame["group"]})
    return frame, name


def eps_ticks(ax, threat_model: str | None, eps_scale: float) -> None:
    """Format a budget x axis drawn in :func:`eps_unit` units: ``k/255`` at integer k,
    percent for L0."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    _, suffix = eps_unit(threat_model, eps_scale)
    if suffix.startswith("/"):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{suffix}" if v else "0"))


def seeds_summary(values) -> tuple[float, float | None]:
    """Mean over seeds and the half-width of its 95% t-interval (None for one seed, or
    when a value is infinite); NaN values are left out."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), None
    if len(values) == 1 or not np.isfinite(values).all():  # e.g. an infinite distance
        return float(values.mean()), None
    sem = stats.sem(values)
    return float(values.mean()), float(sem * stats.t.ppf(0.975, len(values) - 1))


# ---------------------------------------------------------------------------- figures


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 5.0,
               height: float = 3.6, label: str = "", layout: str | None = "constrained",
               **subplot_kw):
    """A Figure (Agg canvas, no pyplot) with a grid of axes in seaborn's whitegrid style.

    ``label`` becomes the figure's caption in the report; image grids pass
    ``layout=None`` (fixed spacing, much cheaper to draw than constrained layout).
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        fig = Figure(figsize=(width * ncols, height * nrows), layout=layout)
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    fig.set_label(label)
    return fig, axes


def styled(fn, *args, **kwargs):
    """Call a seaborn plotting function inside the reports' style context."""
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        return fn(*args, **kwargs)


def percent(value: float) -> str:
    """``0.631 -> "63%"`` (one decimal below 10%)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    pct = 100 * float(value)
    return f"{pct:.1f}%" if 0 < abs(pct) < 10 else f"{pct:.0f}%"


def code_block(text: str, lang: str = "") -> str:
    """``text`` as a fenced Markdown code block whose fence no line of it can close."""
    longest = max((len(run) for run in _backtick_runs(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _backtick_runs(text: str) -> list[str]:
    import re

    return re.findall(r"`+", text)


def inline_code(text: str) -> str:
    """``text`` as Markdown inline code (safe for backticks inside)."""
    longest = max((len(run) for run in _backtick_runs(text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def all_metrics(run):
    """The run's metrics table plus the per-cell metric rows, duplicates dropped."""
    import pandas as pd

    frames = [f for f in (run.metrics, run.cell_metrics()) if len(f)]
    if not frames:
        return pd.DataFrame(columns=["metric", "value"])
    frame = pd.concat(frames, ignore_index=True)
    hashable = [c for c in frame.columns
                if not frame[c].map(lambda v: isinstance(v, (list, dict, np.ndarray))).any()]
    return frame.drop_duplicates(subset=hashable, ignore_index=True)


def present(frame, column: str):
    """Boolean mask: rows where ``column`` exists and is not missing."""
    import pandas as pd

    if column not in frame:
        return pd.Series(False, index=frame.index)
    return frame[column].notna()
