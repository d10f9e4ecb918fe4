"""Figures for every stored metric beyond the summary table and the accuracy curves.

Generic, driven by the tidy metric rows alone, so new metrics appear without changes:

- rows along an axis column (``epsilon``, ``lambda``, ``rank``, ``quantile``,
  ``bin_left``, ... see ``AXIS_COLUMNS``) become lines vs that axis — fooling success and
  margin vs eps (Galloway et al. 2018, Fig. 9), singular-value spectra per layer (Wen et al. (2020),
  by ``rank``), tilting angle and d_adv vs lambda (Tanay & Griffin 2016), margin and
  loss histograms (by ``bin_left``);
- per-layer rows without such an axis become bars per layer (e.g. the std of each
  layer's singular values);
- scalar metrics (no axis) become bars per configuration — GE-gap bars (Wen et al. (2020)
  Table 6) and anything unknown.

Panels are split by ``attack``, ``layer``, ``threat_model`` or ``split`` when those vary;
any other qualifier that varies (``convention``, ...) gets its own line style, so that
different series are never averaged together.
"""

from __future__ import annotations

import numpy as np

from robench import Reporter, ReportSection

from . import _common as C
from .summary import ROBUSTNESS_RANK, rank

SHOWN_ELSEWHERE = ("clean_accuracy", "robust_accuracy", "auc")
"""Metrics the summary table and accuracy curves already show (other scalar metrics of
the summary's main table, e.g. breakdown budgets, get no bars either)."""

FACETS = ("attack", "layer", "threat_model", "split")
"""Columns that split a metric into panels when they take several values."""

MAX_PANELS = 6


def _present_columns(rows) -> list[str]:
    return [c for c in rows.columns if rows[c].notna().any()]


def _varying(rows, column) -> bool:
    return column in rows and rows[column].nunique(dropna=True) > 1


def _n_seeds(rows) -> int:
    return int(rows.groupby("group")["seed"].nunique().max()) if "seed" in rows else 1


def _variant(rows, used: set[str]):
    """``(rows, column)``: the qualifier columns not otherwise encoded that still vary
    (convention, threshold, split, ...) joined into one ``variant`` label, so that
    different series are never averaged together; column is None when none varies."""
    skip = set(C.DESCRIPTIVE_COLUMNS) | set(C.AXIS_COLUMNS) | set(C.GROUP_KEYS) | used
    varying = [c for c in rows.columns if c not in skip and not C.is_count(c)
               and not c.startswith("_") and _varying(rows, c)]
    if not varying:
        return rows, None
    label = rows[varying].astype(str).agg(", ".join, axis=1) if len(varying) > 1 \
        else rows[varying[0]].astype(str)
    name = ", ".join(varying)
    return rows.assign(**{name: label}), name


def _line_figure(name, rows, axis, keys, order, colours, eps_scale, record):
    import seaborn as sns

    facet = next((c for c in FACETS if _varying(rows, c)), None)
    rows, style = _variant(rows, {axis, facet, "layer"} - {None})
    panels = sorted(rows[facet].dropna().unique(), key=str) if facet else [None]
    label = f"{C.readable(name)} vs {axis}"
    if len(panels) > MAX_PANELS:
        label += f" (first {MAX_PANELS} of {len(panels)} values of {facet})"
        panels = panels[:MAX_PANELS]
    fig, axes = C.new_figure(min(len(panels), 3), -(-len(panels) // 3), width=4.6,
                             label=label)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    errorbar = C.seed_errorbar(_n_seeds(rows))[0]
    for ax, panel in zip(axes.ravel(), panels):
        data = rows if panel is None else rows[rows[facet] == panel]
        x, tm = data[axis].astype(float), None
        if axis == "epsilon":
            tm = _threat_model(data, record)
            x = x * C.eps_unit(tm, eps_scale)[0]
        data, hue = C.hue_column(data.assign(_x=x), keys)
        hue_order = [g for g in order if g in set(data["group"])]
        C.styled(sns.lineplot, data=data, x="_x", y="value", hue=hue, hue_order=hue_order,
                 palette={g: colours[g] for g in hue_order}, style=style, errorbar=errorbar,
                 marker="o" if data["_x"].nunique() <= 25 else None, markersize=4, ax=ax)
        ax.set_xlabel(C.eps_axis_label(tm, eps_scale) if axis == "epsilon" else axis)
        ax.set_ylabel(C.readable(name))
        if axis == "epsilon":
            C.eps_ticks(ax, tm, eps_scale)
        positive_x, positive_y = (data["_x"] > 0).all(), (data["value"] > 0).all()
        if axis == "lambda" and positive_x and data["_x"].max() / data["_x"].min() > 100:
            ax.set_xscale("log")
        if positive_y and data["value"].max() / data["value"].min() > 1e3:
            ax.set_yscale("log")
        if panel is not None:
            ax.set_title(f"{facet} = {panel}")
        C.tidy_legend(ax, (hue, style), title=hue)
    fig.suptitle(C.readable(name))
    return fig


def _threat_model(rows, record) -> str | None:
    if "threat_model" in rows and rows["threat_model"].notna().any():
        return str(rows["threat_model"].dropna().iloc[0])
    if "attack" in rows and rows["attack"].notna().any():
        return C.threat_model_of(record, str(rows["attack"].dropna().iloc[0]))
    return None


def _bar_panel(ax, name, rows, x, keys, order, colours):
    """Bars of ``value`` per layer (``x="layer"``) or per configuration (``x="group"``),
    mean over seeds; series that differ in another qualifier get their own bars."""
    import seaborn as sns

    rows, group_col = C.hue_column(rows, keys)
    groups = [g for g in order if g in set(rows["group"])]
    rows, variant = _variant(rows, {"layer", group_col})
    if x == "layer":
        if variant:
            rows = rows.assign(series=rows["group"] + " · " + rows[variant])
            hue, hue_order, palette = "series", sorted(rows["series"].unique()), None
        else:
            hue, hue_order, palette = group_col, groups, {g: colours[g] for g in groups}
        x_order = None
    else:
        x, x_order = group_col, groups
        if variant:
            hue, hue_order, palette = variant, sorted(rows[variant].unique()), None
        else:
            hue, hue_order, palette = group_col, groups, {g: colours[g] for g in groups}
    C.styled(sns.barplot, data=rows, x=x, y="value", hue=hue, hue_order=hue_order,
             palette=palette, order=x_order,
             errorbar=C.seed_errorbar(_n_seeds(rows))[0], ax=ax)
    ax.set_title(C.readable(name))
    ax.set_xlabel(x)
    ax.set_ylabel(C.readable(name))
    ax.tick_params(axis="x", labelrotation=30, labelsize="small")
    if ax.get_legend() is not None:
        C.tidy_legend(ax, (hue,), title=hue)


class MetricFigures(Reporter):
    """Figures for every stored metric beyond the summary and the accuracy curves:
    lines along eps/lambda/index/bin, bars per layer, bars per configuration."""

    name = "metric_figures"

    def sections(self, run):
        record = run.record()
        metrics = C.usable_metrics(C.all_metrics(run))
        if not len(metrics):
            return []
        metrics = metrics[~metrics["metric"].isin(SHOWN_ELSEWHERE)]
        metrics = metrics[np.isfinite(metrics["value"].astype(float))]
        if not len(metrics):
            return []
        keys = C.group_keys(record)
        metrics = C.add_group(metrics, keys)
        order = C.group_order(record, keys) or list(metrics["group"].unique())
        colours = C.palette([*order, *sorted(set(metrics["group"]) - set(order))])
        eps_scale = C.data_info(record)["eps_scale"]
        figures, scalars, per_layer = [], [], []
        for name in sorted(metrics["metric"].unique()):
            rows = metrics[metrics["metric"] == name]
            rows = rows[_present_columns(rows)].assign(value=lambda f: f["value"].astype(float))
            axis = next((a for a in C.AXIS_COLUMNS if a in rows), None)
            if axis is not None:
                figures.append(_line_figure(name, rows, axis, keys, order, colours,
                                            eps_scale, record))
            elif "layer" in rows:
                per_layer.append((name, rows))
            elif rank(name, C.direction(rows)) > ROBUSTNESS_RANK:  # the others: summary
                scalars.append((name, rows))
        for name, rows in per_layer:
            fig, axes = C.new_figure(1, width=max(5.0, 0.5 * rows["layer"].nunique() + 3),
                                     label=f"{C.readable(name)} per layer")
            _bar_panel(axes[0, 0], name, rows, "layer", keys, order, colours)
            figures.append(fig)
        for start in range(0, len(scalars), MAX_PANELS):
            chunk = scalars[start:start + MAX_PANELS]
            fig, axes = C.new_figure(min(len(chunk), 3), -(-len(chunk) // 3), width=4.2,
                                     label="Scalar metrics per configuration: "
                                     + ", ".join(C.readable(n) for n, _ in chunk))
            for ax in axes.ravel()[len(chunk):]:
                ax.set_axis_off()
            for ax, (name, rows) in zip(axes.ravel(), chunk):
                _bar_panel(ax, name, rows, "group", keys, order, colours)
            figures.append(fig)
        if not figures:
            return []
        band = C.seed_errorbar(_n_seeds(metrics))[1]
        text = ("Stored metrics beyond clean accuracy, AUC and the robustness summaries of "
                "the summary table. Lines follow the metric's axis column (eps in natural "
                "units); bars are means over seeds" + (f" ({band})" if band else "") + ".")
        return [ReportSection(title="Metrics", text=text, figures=figures, order=30)]
