"""Accuracy-vs-eps curves per attack (Galloway et al. 2018, Figs. 7, 10, 11).

One figure per attack, one line per configuration (model / defense), the mean over seeds
with a band over seeds (seaborn's ``errorbar``: the 95% t-interval of the summary table
from three seeds on, the range between two seeds) when several seeds ran. The
eps axis is in the data set's natural units (``k/255`` for 8-bit images, percent of input
values for L0 budgets). Every point is a row of the ``robust_accuracy`` metric: its
unconditional and clean-correct conventions side by side (docs/experiments.md); inputs an
attack generated (fooling images) show the ``fooling`` or ``attack_success`` metric's
success rate. Nothing is recomputed from the per-sample results.
"""

from __future__ import annotations

from robench import Reporter, ReportSection

from . import _common as C


def _attack_order(record, curves) -> list[str]:
    declared = list(record.attacks)
    seen = set(curves["attack"])
    return [a for a in declared if a in seen] + sorted(seen - set(declared))


def _draw(ax, data, *, y, keys, hue_order, colours, style=None, style_order=None,
          n_seeds, tm, eps_scale, chance=None, ylabel="robust accuracy"):
    """One panel: ``y`` vs eps (natural units), one line per group."""
    import seaborn as sns

    mult, _ = C.eps_unit(tm, eps_scale)
    data = data.assign(_x=data["epsilon"].astype(float) * mult)
    data, hue = C.hue_column(data, keys)
    hue_order = [g for g in hue_order if g in set(data["group"])]
    n_points = data["_x"].nunique()
    C.styled(sns.lineplot, data=data, x="_x", y=y, hue=hue, hue_order=hue_order,
             palette={g: colours[g] for g in hue_order}, style=style, style_order=style_order,
             errorbar=C.seed_errorbar(n_seeds)[0],
             marker="o" if n_points <= 25 else None, markersize=4, ax=ax)
    if chance is not None:
        ax.axhline(chance, color="0.5", linestyle=":", linewidth=1, label="chance")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(C.eps_axis_label(tm, eps_scale))
    ax.set_ylabel(ylabel)
    C.eps_ticks(ax, tm, eps_scale)
    C.tidy_legend(ax, (hue, style), title=hue)


MAX_TABLE_BUDGETS = 12
"""Attacks swept over at most this many budgets also get a table of their curve (e.g.
the JSMA table of Galloway et al. (2018), Table 2: success rate per max fraction of features)."""


def budget_table(means, attack, order, tm, eps_scale, statistic):
    """The curve as a table: one row per budget (natural units), one column per
    configuration, mean over seeds (:func:`._common.curve_means`) in percent."""
    import pandas as pd

    wide = means.pivot_table(index="epsilon", columns="group", values="value",
                             aggfunc="first")
    groups = [g for g in order if g in wide.columns]
    table = pd.DataFrame({"budget": [C.format_eps(e, tm, eps_scale) for e in wide.index]})
    for group in groups:
        table[group] = [C.percent(v) for v in wide[group]]
    table.attrs["title"] = f"{attack}: {statistic} per budget (mean over seeds)"
    return table


def _n_seeds(frame, by=("group",)) -> int:
    return int(frame.groupby(list(by))["seed"].nunique().max()) if len(frame) else 0


class AccuracyCurves(Reporter):
    """Accuracy (or attack success rate) vs eps per attack, one line per model/defense,
    bands across seeds, eps in natural units (k/255, % of values)."""

    name = "accuracy_curves"

    def sections(self, run):
        record = run.record()
        curves = C.curves(C.usable_metrics(run.metrics))
        curves = curves[curves["attack"] != "worst_case"]
        if not len(curves):
            return []
        keys = C.group_keys(record)
        curves = C.add_group(curves, keys)
        means = C.curve_means(curves, keys)
        order = C.group_order(record, keys) or list(curves["group"].unique())
        colours = C.palette(order)
        info = C.data_info(record)
        chance = 1 / info["num_classes"] if info.get("num_classes") else None
        figures, tables = [], []
        for attack in _attack_order(record, curves):
            part = curves[curves["attack"] == attack]
            tm = part["threat_model"].iloc[0]
            meta = record.attacks.get(attack)
            component = meta.component if meta is not None else ""
            title = f"{attack} ({component}, {tm})".replace("(, ", "(")
            common = dict(keys=keys, hue_order=order, colours=colours,
                          n_seeds=_n_seeds(part), tm=tm, eps_scale=info["eps_scale"])
            statistic = part["statistic"].iloc[0]
            if statistic == "accuracy":
                fig, axes = C.new_figure(2, label=f"Robust accuracy vs ε under {attack}")
                _draw(axes[0, 0], part, y="value", chance=chance, **common)
                axes[0, 0].set_title("all test samples (unconditional)")
                _draw(axes[0, 1], part.dropna(subset=["conditional"]), y="conditional",
                      chance=chance, ylabel="accuracy on clean-correct samples", **common)
                axes[0, 1].set_title("clean-correct samples only")
            else:
                fig, axes = C.new_figure(1, label=f"Attack success rate vs ε, {attack}")
                _draw(axes[0, 0], part, y="value", ylabel="attack success rate", **common)
            fig.suptitle(title)
            figures.append(fig)
            if part["epsilon"].nunique() <= MAX_TABLE_BUDGETS:
                tables.append(budget_table(means[means["attack"] == attack], attack, order,
                                           tm, info["eps_scale"], statistic))
        band = C.seed_errorbar(_n_seeds(curves))[1]
        text = ("One line per configuration, the mean over seeds of the `robust_accuracy` "
                "metric (or the attack success rate of inputs the attack generated). "
                + (f"Shaded bands: {band}. " if band else "")
                + "The dotted line is chance (1/classes).")
        return [ReportSection(title="Accuracy vs perturbation budget", text=text,
                              tables=tables, figures=figures, order=20)]

    def compare(self, runs):
        """Curves of every run in one figure per attack: colour = configuration,
        line style = run."""
        import pandas as pd

        frames, records = [], {}
        for label, run in runs.items():
            records[label] = run.record()
            curves = C.curves(C.usable_metrics(run.metrics))
            curves = curves[curves["attack"] != "worst_case"]
            if len(curves):
                frames.append(curves.assign(run=label))
        if not frames:
            return []
        curves = pd.concat(frames, ignore_index=True)
        keys, order = C.runs_groups(records.values())
        curves = C.add_group(curves, keys)
        order = order + sorted(set(curves["group"]) - set(order))
        colours = C.palette(order)
        info = C.data_info(next(iter(records.values())))
        figures = []
        for attack in dict.fromkeys(curves["attack"]):
            part = curves[curves["attack"] == attack]
            tm = part["threat_model"].iloc[0]
            fig, axes = C.new_figure(1, width=6.5, label=f"{attack}: runs compared")
            ylabel = "robust accuracy" if part["statistic"].iloc[0] == "accuracy" \
                else "attack success rate"
            _draw(axes[0, 0], part, y="value", keys=keys, hue_order=order, colours=colours,
                  style="run", style_order=list(runs), n_seeds=_n_seeds(part, ("run", "group")),
                  tm=tm, eps_scale=info["eps_scale"], ylabel=ylabel)
            fig.suptitle(f"{attack} ({tm})")
            figures.append(fig)
        return [ReportSection(title="Accuracy vs perturbation budget across runs",
                              text="Colour = configuration, line style = run.",
                              figures=figures, order=20)]
