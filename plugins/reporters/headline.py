"""The first section of a report: robustness at a glance.

One figure per configuration (model / defense) with every attack's robust-accuracy curve
and the worst case over attacks in bold, with bands over seeds; then a table of robust
accuracy at the budgets the experiment names (``[report] eps = ["8/255"]``, as
RobustBench reports) with intervals, marking differences from the best configuration
that are not significant. Every number is a metric row (``clean_accuracy``,
``robust_accuracy``, ``worst_case``) or its mean over seeds by the ``seed_summary``
metric's definition; nothing is recomputed from the per-sample results.
"""

from __future__ import annotations

import numpy as np

from robench import Reporter, ReportSection

from . import _common as C

WORST = "worst_case"
"""Attack label of the ``worst_case`` metric's rows."""

EPS_RTOL = 1e-6
"""Relative tolerance when matching a named budget to a grid value."""


def named_eps(record) -> list[float] | None:
    """The budgets of ``[report] eps`` (numbers or fractions such as ``"8/255"``), or None
    when the experiment names none."""
    from robench.options import parse_number

    raw = ((record.experiment.config or {}).get("report") or {}).get("eps")
    if raw is None:
        return None
    return [parse_number(value, "report.eps") for value in raw]


def _grid_value(grid: np.ndarray, eps: float) -> float | None:
    hit = grid[np.isclose(grid, eps, rtol=EPS_RTOL, atol=1e-12)]
    return float(hit[0]) if len(hit) else None


def unit_sentence(record) -> str:
    """The one sentence that says how budgets are written in the report."""
    scale = C.data_info(record)["eps_scale"]
    if scale > 1:
        return (f"Budgets ε are written as k/{scale:g} (the data's {scale:g} levels per unit "
                "of its range); L0 budgets as the percentage of input values changed.")
    return ("Budgets ε are on the data's own scale; L0 budgets as the percentage of input "
            "values changed.")


def _figure(part, attacks, tm, eps_scale, chance, group, colours):
    import seaborn as sns

    fig, axes = C.new_figure(len(tm), width=5.2, label=f"Robust accuracy of {group}: every "
                             "attack, the worst case in bold")
    for ax, threat in zip(axes[0], tm):
        data = part[part["threat_model"] == threat]
        mult, _ = C.eps_unit(threat, eps_scale)
        data = data.assign(_x=data["epsilon"].astype(float) * mult)
        n_seeds = int(data.groupby("attack")["seed"].nunique().max())
        errorbar = C.seed_errorbar(n_seeds)[0]
        for attack in [a for a in attacks if a in set(data["attack"])]:
            rows = data[data["attack"] == attack]
            worst = attack == WORST
            C.styled(sns.lineplot, data=rows, x="_x", y="value", errorbar=errorbar,
                     color="black" if worst else colours[attack],
                     linewidth=3.0 if worst else 1.3,
                     label="worst case" if worst else attack, ax=ax)
        if chance is not None:
            ax.axhline(chance, color="0.5", linestyle=":", linewidth=1, label="chance")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(C.eps_axis_label(threat, eps_scale))
        ax.set_ylabel("robust accuracy")
        C.eps_ticks(ax, threat, eps_scale)
        C.tidy_legend(ax, title="attack")
    return fig


def _interval(row) -> str:
    lower, upper = row.get("lower"), row.get("upper")
    if lower is None or upper is None or np.isnan(lower) or np.isnan(upper):
        return ""
    return f" [{C.percent(lower)}, {C.percent(upper)}]"


def _paired_marks(paired, keys, attack: str, eps: float) -> dict[str, str]:
    """``{configuration: mark}`` from the ``paired_difference`` metric's robust-accuracy
    rows at ``eps`` under ``attack``: "baseline" for the baseline, "not significant"
    where the paired interval of the difference from it includes 0."""
    if paired is None or not len(paired):
        return {}
    rows = paired[(paired["metric"] == "paired_robust_accuracy_difference")
                  & (paired["attack"] == attack)
                  & np.isclose(paired["epsilon"].astype(float), eps, rtol=EPS_RTOL,
                               atol=1e-12)]
    if not len(rows):
        return {}
    marks = {g: "" if bool(sig) else " not significant"
             for g, sig in zip(C.add_group(rows, keys)["group"], rows["significant"])}
    baseline = dict(zip(("model", "defense"), str(rows["baseline"].iloc[0]).split("/", 1)))
    marks[C.add_group(rows.head(1).assign(**baseline), keys)["group"].iloc[0]] = " (baseline)"
    return marks


def eps_table(means, clean, order, record, budgets, paired=None, keys=()):
    """Robust accuracy at each named budget: one row per configuration, a column per
    (attack, budget) and the worst case, ``value [lower, upper]`` in percent; the best
    of each column in bold and "not significant" marks: where the ``paired_difference``
    metric compared the configurations at that budget, its paired test against the
    baseline decides; elsewhere a configuration whose interval overlaps the best's is
    marked. Returns the table and whether any interval is shown."""
    import pandas as pd

    eps_scale = C.data_info(record)["eps_scale"]
    table = pd.DataFrame({"configuration": order})
    shown_interval = False
    if len(clean):
        by_group = clean.set_index("group")
        table["clean accuracy"] = [
            C.percent(by_group.at[g, "value"]) + _interval(by_group.loc[g].to_dict())
            if g in by_group.index else "" for g in order]
    attacks = [a for a in record.attacks if a in set(means["attack"])]
    if WORST in set(means["attack"]):
        attacks.append(WORST)
    threats = list(dict.fromkeys(a.threat_model for a in record.attacks.values()))
    for attack, tm in [(a, t) for a in attacks for t in threats
                       if ((means["attack"] == a) & (means["threat_model"] == t)).any()]:
        part = means[(means["attack"] == attack) & (means["threat_model"] == tm)]
        for eps in budgets.get(tm, []):
            at = part[np.isclose(part["epsilon"], eps, rtol=EPS_RTOL, atol=1e-12)]
            if not len(at):
                continue
            at = at.set_index("group")
            name = "worst case" if attack == WORST else attack
            column = f"{name} @ {C.format_eps(eps, tm, eps_scale)}"
            best = at["value"].idxmax()
            marks = _paired_marks(paired, keys, attack, eps)
            cells = []
            for group in order:
                if group not in at.index:
                    cells.append("")
                    continue
                row = at.loc[group].to_dict()
                interval = _interval(row)
                shown_interval |= bool(interval)
                text = C.percent(row["value"]) + interval
                if group == best or np.isclose(row["value"], at.at[best, "value"]):
                    text = f"**{text}**"
                if marks:
                    text += marks.get(group, "")
                elif group != best and interval and _interval(at.loc[best].to_dict()) \
                        and row["upper"] >= at.at[best, "lower"]:
                    text += " not significant"
                cells.append(text)
            table[column] = cells
    return table, shown_interval


class Headline(Reporter):
    """Robustness at a glance: per configuration, every attack's robust-accuracy curve
    with the worst case in bold; then robust accuracy at the budgets of ``[report] eps``
    with intervals and "not significant" marks."""

    name = "headline"

    def sections(self, run):
        record = run.record()
        metrics = C.usable_metrics(run.metrics)
        curves = C.curves(metrics)
        curves = curves[curves["statistic"] == "accuracy"]
        title = "Robustness at a glance"
        if not len(curves):
            if not record.done_units():
                return []
            return [ReportSection(title=title, order=8, text=(
                "No robust-accuracy rows to show: list `robust_accuracy` (and `worst_case` "
                "for the worst case over attacks) in `[metrics] use`."))]
        keys = C.group_keys(record)
        curves = C.add_group(curves, keys)
        order = C.group_order(record, keys) or list(dict.fromkeys(curves["group"]))
        order = [g for g in order if g in set(curves["group"])]
        attacks = [a for a in record.attacks if a in set(curves["attack"])]
        attacks += sorted(set(curves["attack"]) - set(attacks) - {WORST}) + [WORST]
        colours = C.palette([a for a in attacks if a != WORST])
        info = C.data_info(record)
        chance = 1 / info["num_classes"] if info.get("num_classes") else None
        figures = []
        for group in order:
            part = curves[curves["group"] == group]
            threats = list(dict.fromkeys(part["threat_model"]))
            figures.append(_figure(part, attacks, threats, info["eps_scale"], chance, group,
                                   colours))
        means = C.curve_means(curves, keys)
        single = (C.cell_table(record).groupby(keys)["seed"].nunique() <= 1).all()
        if single:  # one seed: the metric rows themselves, with their bootstrap intervals
            means = curves.assign(n_seeds=1)
        clean = metrics[metrics["metric"] == "clean_accuracy"] if len(metrics) else metrics
        clean = C.add_group(clean if single or not len(clean) else C.over_seeds(clean), keys)
        named = named_eps(record)
        budgets, notes = {}, []
        for tm, part in means.groupby("threat_model"):
            grid = np.unique(part["epsilon"].astype(float))
            if named is None:
                budgets[tm] = [C.midpoint(grid)]
                continue
            budgets[tm] = [v for v in (_grid_value(grid, e) for e in named) if v is not None]
            missing = [e for e in named if _grid_value(grid, e) is None]
            if missing:
                notes.append(f"{', '.join(C.format_eps(e, tm, info['eps_scale']) for e in missing)}"
                             f" is not on the {tm} grid")
        paired = metrics[metrics["metric"] == "paired_robust_accuracy_difference"] \
            if len(metrics) else None
        table, intervals = eps_table(means, clean, order, record, budgets, paired, keys)
        table.attrs["title"] = "Robust accuracy at " + (
            "the budgets of [report] eps" if named is not None else "each grid's midpoint "
            "(name budgets with [report] eps)")
        band = C.seed_errorbar(int(curves.groupby("group")["seed"].nunique().max()))[1]
        text = [unit_sentence(record),
                "One figure per configuration: robust accuracy (unconditional: a sample "
                "misclassified when clean counts as broken) under every attack, and the "
                "worst case over the attacks of each threat model in bold (a sample counts "
                "only if every attack failed on it)."
                + (f" Bands: {band}." if band else "")]
        if intervals:
            text.append("Intervals in brackets: " + (
                "95% bootstrap intervals over test samples (one seed: training noise is "
                "not included)" if single else "95% t-intervals over seeds")
                + ". The best configuration of each column is in **bold**. \"Not "
                "significant\": " + (
                    "the paired_difference metric's paired bootstrap interval of the "
                    "difference from the baseline includes 0; in columns it does not "
                    "cover (the worst case), the configuration's interval overlaps the "
                    "best's" if paired is not None and len(paired) else
                    "the configuration's interval overlaps the best's (add the "
                    "paired_difference metric for a paired test)") + ".")
        if notes:
            text.append("Not shown: " + "; ".join(C.md(n) for n in notes) + ".")
        return [ReportSection(title=title, text="\n\n".join(text), tables=[table],
                              figures=figures, order=8)]
