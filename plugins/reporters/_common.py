"""Helpers shared by the built-in reporters: group labels, colours, eps units, figures.

Everything here reads stored frames only (never torch). Figures are created as plain
:class:`matplotlib.figure.Figure` objects, which always draw with the Agg canvas: no
pyplot state and no global backend switch (a notebook's backend stays as it was).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

GROUP_KEYS = ("dataset", "model", "defense")
"""Cell columns that identify a compared configuration (seeds are pooled over)."""

AXIS_COLUMNS = ("epsilon", "lambda", "gamma", "budget", "rank", "index", "quantile",
                "bin_left", "bin", "feature", "k", "step", "epoch")
"""Columns that put metric rows along an x axis (a curve, spectrum or histogram), in
order of preference; rows with none of them (and no ``layer``) are scalars."""

DESCRIPTIVE_COLUMNS = ("metric", "value", "lower", "upper", "std", "note", "dataset", "model",
                       "defense", "seed", "cell", "group", "attack_component", "library",
                       "library_version", "eps_min", "eps_max", "chance", "threshold",
                       "bin_right", "higher_is_better", "method", "n_seeds")
"""Metric columns that describe a value rather than tell two series apart."""


def is_count(column: str) -> bool:
    """Sample/point counts (``n``, ``n_eps``, ...) describe a value; they do not name it."""
    return column == "n" or column.startswith("n_")


def usable_metrics(metrics):
    """Metric rows a report draws: per-seed rows (``*_over_seeds`` rows are read where a
    table needs a mean over seeds, see :func:`over_seeds`) and no per-sample rows
    (those with a ``sample`` column)."""
    if not len(metrics):
        return metrics
    keep = ~metrics["metric"].astype(str).str.endswith(SEED_SUFFIX)
    if "sample" in metrics:
        keep &= metrics["sample"].isna()
    return metrics[keep]


SEED_SUFFIX = "_over_seeds"
"""Suffix of the rows of the ``seed_summary`` metric (mean and interval over seeds)."""


def direction(rows) -> int:
    """+1 when larger values of these metric rows are better for the defender, -1 when
    smaller are, 0 when unknown: read from their ``higher_is_better`` column (the metric
    declares it; see :class:`robench.components.Metric`), never from names."""
    if "higher_is_better" not in rows or not rows["higher_is_better"].notna().any():
        return 0
    known = {bool(v) for v in rows["higher_is_better"].dropna()}
    return 0 if len(known) != 1 else (1 if known.pop() else -1)


def over_seeds(rows):
    """Mean over seeds and its t-interval of every group of metric ``rows`` that differ
    only by seed: the definition of the ``seed_summary`` metric
    (:func:`robench_plugins.metrics._tables.over_seeds`), so a table's mean over seeds is
    that metric's number. Columns: the rows' identifying columns, ``value``, ``lower``,
    ``upper``, ``std``, ``n_seeds``."""
    from ..metrics import _tables

    return _tables.over_seeds(rows)


READABLE = {"clean_accuracy": "clean accuracy", "robust_accuracy": "robust accuracy",
            "auc": "AUC", "worst_case_accuracy": "worst-case accuracy",
            "worst_case_auc": "worst-case AUC", "breakdown_eps": "breakdown ε",
            "success_rate": "attack success rate", "fooling_success": "fooling success rate"}
"""Names for people of the built-in metric rows; any other name shows with spaces."""


def readable(metric: str) -> str:
    """A metric row's name for people: ``"worst_case_auc"`` -> ``"worst-case AUC"``."""
    return READABLE.get(metric, metric.replace("_", " "))


CURVE_COLUMNS = [*GROUP_KEYS, "seed", "cell", "attack", "threat_model", "epsilon",
                 "statistic", "value", "conditional", "lower", "upper"]


def curves(metrics):
    """The accuracy-vs-eps curve of every (cell, attack), read from the metric rows.

    ``robust_accuracy`` rows give ``value`` (unconditional convention) and
    ``conditional`` (over clean-correct samples), with their bootstrap ``lower``/
    ``upper`` when the metric computed them; ``worst_case_accuracy`` rows give the
    curve of attack ``"worst_case"`` the same way. Attacks without accuracy rows
    (generated inputs: fooling images) give their ``fooling_success`` or
    ``success_rate`` rows instead, as ``statistic = "attack success rate"``.
    """
    import pandas as pd

    frames = []
    keys = [*GROUP_KEYS, "seed", "cell", "attack", "threat_model", "epsilon"]
    for name in ("robust_accuracy", "worst_case_accuracy"):
        rows = metrics[metrics["metric"] == name] if len(metrics) else metrics
        if not len(rows) or "convention" not in rows:
            continue
        rows = rows.assign(**{k: rows[k] if k in rows else pd.NA
                              for k in ("lower", "upper")})
        main = rows[rows["convention"] == "unconditional"][keys + ["value", "lower", "upper"]]
        cond = rows[rows["convention"] == "conditional"][keys + ["value"]]
        frames.append(main.merge(cond.rename(columns={"value": "conditional"}), on=keys,
                                 how="left").assign(statistic="accuracy"))
    have = set(pd.concat(frames)["attack"]) if frames else set()
    for name in ("fooling_success", "success_rate"):
        rows = metrics[metrics["metric"] == name] if len(metrics) else metrics
        if len(rows) and "epsilon" in rows:
            rows = rows[~rows["attack"].isin(have)]
            have |= set(rows["attack"])
            frames.append(rows[keys + ["value"]].assign(statistic="attack success rate"))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    return out.reindex(columns=CURVE_COLUMNS)


def curve_means(curve_rows, keys):
    """Per configuration (``group`` of ``keys``), attack and eps: the mean over seeds of
    :func:`curves` rows and its t-interval (:func:`over_seeds`), with ``n_seeds``."""
    columns = [*GROUP_KEYS, "seed", "cell", "attack", "threat_model", "epsilon", "value"]
    rows = curve_rows[columns].assign(metric=curve_rows["statistic"])
    return add_group(over_seeds(rows), keys)


# ----------------------------------------------------------------------- run metadata


def data_info(record) -> dict[str, Any]:
    """The data set block of the run record, with ``eps_scale`` defaulting to 1."""
    info = dict(record.data or {})
    info["eps_scale"] = info.get("eps_scale") or 1
    return info


def threat_model_of(record, attack: str | None) -> str | None:
    """The threat model the run recorded for ``attack`` (None when unknown)."""
    meta = record.attacks.get(attack) if isinstance(attack, str) else None
    return meta.threat_model if meta is not None else None


def cell_table(record):
    """One row per cell of the run record: cell id, dataset, model, defense, seed, status."""
    import pandas as pd

    rows = []
    for cell_id, rec in record.cells.items():
        cell = dict(rec.cell or {})
        cell["cell"] = cell_id
        cell["status"] = rec.status
        rows.append(cell)
    return pd.DataFrame(rows, columns=["cell", *GROUP_KEYS, "seed", "status"])


def group_keys(record) -> list[str]:
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
    if not len(frame):  # agg over no rows gives a frame, not a column
        frame[column] = np.array([], dtype=object)
        return frame
    frame[column] = frame[keys].astype(str).agg(" / ".join, axis=1)
    return frame


def group_order(record, keys: Iterable[str]) -> list[str]:
    """Every group label of the run's cells, in the order the run lists its cells (the
    experiment file's order of models and defenses)."""
    cells = add_group(cell_table(record), keys)
    return list(dict.fromkeys(cells["group"])) if len(cells) else []


def runs_groups(records: Iterable[Any]) -> tuple[list[str], list[str]]:
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


def t_interval(values) -> tuple[float, float]:
    """The t-interval of the mean of ``values`` (seeds), as seaborn's ``errorbar``
    callable: the interval of :func:`over_seeds`, from the same definition."""
    from ..metrics import _tables

    mean, half = _tables.t_interval(values)
    half = 0.0 if np.isnan(half) else half
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


def tidy_legend(ax, headings=(), title: str | None = None) -> None:
    """Redraw ``ax``'s legend without the entries seaborn adds as pseudo-headings (the
    names of its hue and style columns, in ``headings``), titled ``title``."""
    handles, labels = ax.get_legend_handles_labels()
    kept = [(h, lab) for h, lab in zip(handles, labels) if lab not in set(headings)]
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if kept:
        ax.legend(*zip(*kept), fontsize="small", frameon=True, title=title,
                  title_fontsize="small")


def eps_ticks(ax, threat_model: str | None, eps_scale: float) -> None:
    """Format a budget x axis drawn in :func:`eps_unit` units: ``k/255`` at integer k,
    percent for L0."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    _, suffix = eps_unit(threat_model, eps_scale)
    if suffix.startswith("/"):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{suffix}" if v else "0"))


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
    """``0.631 -> "63.1%"``: every percentage of a report with one decimal."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.1f}%"


def md(value: Any) -> str:
    """A value from the run (a label, a file name, an error) as Markdown text that shows
    literally: no markup, no link, one line (:func:`robench.report.escape_markdown`)."""
    from robench.report import escape_markdown

    return escape_markdown(str(value))


def code_block(text: str, lang: str = "") -> str:
    """``text`` as a fenced Markdown code block whose fence no line of it can close."""
    longest = max((len(run) for run in _backtick_runs(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _backtick_runs(text: str) -> list[str]:
    return re.findall(r"`+", text)


def inline_code(text: str) -> str:
    """``text`` as Markdown inline code (safe for backticks inside; line breaks become
    spaces, since a code span cannot cross a blank line)."""
    text = re.sub(r"\s*[\r\n]+\s*", " ", str(text))
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
