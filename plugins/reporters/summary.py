"""The summary reporter: tables of scalar metrics and plain-language comparisons.

Rows come from the stored metrics, whatever they are: clean accuracy, the area under each
attack's accuracy-vs-eps curve (the cross-paper conventions of docs/experiments.md: on the
common grid, normalised by its range, reported with it), worst case over attacks, breakdown
budgets, and any other scalar metric a plugin wrote (unknown names appear under their own
name, in a second table). Columns are the compared configurations, means over seeds with a
95% t-interval. One sentence per attack compares the best and the worst configuration where
they differ most and at the eps grid's midpoint, the way Galloway et al. (2018) state their
L0 finding (at 26% of values swapped, CNN-L2 63.1%, WRN 31.7%).
"""

from __future__ import annotations

import numpy as np

from robench import Reporter, ReportSection

from . import _common as C

AXIS_COLUMNS = (*C.AXIS_COLUMNS, "layer", "target", "class", "sample")
"""Columns that make a metric row one point of a curve or distribution, not a scalar."""

META_COLUMNS = (*C.DESCRIPTIVE_COLUMNS, "attack", "threat_model", "convention")
"""Columns that are never a ``key=value`` qualifier of a summary column's name (attack,
threat model and convention are written into the name their own way)."""

ROBUSTNESS_RANK = 2
"""Quantities ranked up to here (clean accuracy, AUC, worst case, breakdown, distances)
form the main table; every other scalar metric goes to the second table."""

EPS_VALUED = ("breakdown_eps", "median_distance", "mean_distance", "mean_distance_success")
"""Metrics whose values are budgets or distances, shown in natural units (k/255, %)."""

def rank(metric: str, direction: int) -> int:
    """Where a scalar metric goes: 0 clean accuracy, 1 AUC, 2 the other robustness
    summaries (main table, up to ``ROBUSTNESS_RANK``), 3 known ``direction``, 4 unknown."""
    if metric == "clean_accuracy":
        return 0
    if metric in ("auc", "breakdown_eps", "median_distance") or metric.startswith("worst_case"):
        return 1 if metric == "auc" else 2
    return 3 if direction else 4


def _threat_model(row: dict, record) -> str | None:
    tm = row.get("threat_model")
    return tm if isinstance(tm, str) else C.threat_model_of(record, row.get("attack"))


def _quantity(row: dict, record, eps_scale: float) -> str:
    """Column label of a scalar metric row: metric, attack (or threat model), eps range
    in natural units, then any other qualifier as key=value."""
    parts = [C.readable(row["metric"])]
    if isinstance(row.get("attack"), str) and row["attack"] != "worst_case":
        parts.append(row["attack"])
    elif isinstance(row.get("threat_model"), str):
        parts.append(row["threat_model"])
    label = " · ".join(parts)
    tm = _threat_model(row, record)
    if _is_number(row.get("eps_min")) and _is_number(row.get("eps_max")):
        label += (f" [{C.format_eps(row['eps_min'], tm, eps_scale)}, "
                  f"{C.format_eps(row['eps_max'], tm, eps_scale)}]")
    if _is_number(row.get("epsilon")):
        label += f" @ {C.format_eps(row['epsilon'], tm, eps_scale)}"
    if row.get("convention") == "conditional":
        label += " on clean-correct"
    extras = [f"{k}={v}" for k, v in sorted(row.items())
              if k not in META_COLUMNS and k not in AXIS_COLUMNS and not _missing(v)
              and not C.is_count(k) and not k.startswith("_")]
    return label + (f" ({', '.join(extras)})" if extras else "")


def _missing(value) -> bool:
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not np.isnan(value)


def summary_long(run, keys: list[str]):
    """Scalar summary values of one run, long form.

    Columns: ``group, quantity, metric, rank, direction, mean, ci, n, n_total, eps_unit``
    where ``mean`` is the mean over the ``n`` of ``n_total`` seeds that have a value (a
    breakdown budget never reached is NaN) and ``ci`` the half-width of its 95%
    t-interval (NaN for a single seed), both from the ``seed_summary`` metric's
    definition (:func:`._common.over_seeds`); ``direction`` comes from the rows'
    ``higher_is_better`` and ``eps_unit`` is the threat model of quantities that are
    budgets (breakdown eps, distances; shown in natural units), else "". Scalar metrics
    are rows without a curve axis (eps, layer, ...); per-eps worst-case rows are
    summarised at the grid's midpoint unless a ``worst_case_auc`` metric is present.
    Every value is a metric row's (one seed) or their mean over seeds: nothing is
    recomputed from the per-sample results.
    """
    import pandas as pd

    record = run.record()
    eps_scale = C.data_info(record)["eps_scale"]
    metrics = C.usable_metrics(C.all_metrics(run))
    columns = ["group", "quantity", "metric", "rank", "direction", "mean", "ci", "n",
               "n_total", "eps_unit"]
    if not len(metrics):
        return pd.DataFrame(columns=columns)
    frame = C.add_group(metrics, keys)
    axis = np.zeros(len(frame), dtype=bool)
    for col in AXIS_COLUMNS:
        if col != "epsilon":
            axis |= C.present(frame, col).to_numpy()
    per_eps = C.present(frame, "epsilon").to_numpy()
    worst = frame["metric"].astype(str).str.startswith("worst_case").to_numpy()
    scalar = frame[~axis & ~per_eps]
    worst_mid = frame[~axis & per_eps & worst]
    if (frame["metric"] == "worst_case_auc").any():  # the area says more than one point
        worst_mid = worst_mid.iloc[0:0]
    if len(worst_mid):
        mids = worst_mid.groupby([c for c in ("metric", "attack", "threat_model")
                                  if c in worst_mid], dropna=False)["epsilon"]
        worst_mid = worst_mid[worst_mid["epsilon"] == mids.transform(C.midpoint)]
    rows = pd.concat([p for p in (scalar, worst_mid) if len(p)], ignore_index=True) \
        if len(scalar) or len(worst_mid) else scalar
    if not len(rows):
        return pd.DataFrame(columns=columns)
    rows = rows.assign(_quantity=[_quantity(r, record, eps_scale)
                                  for r in rows.to_dict("records")])
    seeds = C.cell_table(record).pipe(C.add_group, keys).groupby("group")["seed"].nunique()
    out = []
    for (metric, quantity), part in rows.groupby(["metric", "_quantity"], sort=True):
        tm = _threat_model(part.iloc[0].to_dict(), record)
        unit = tm or "" if metric in EPS_VALUED else ""
        direction = C.direction(part)
        summary = C.add_group(C.over_seeds(part.drop(columns=["group", "_quantity"])), keys)
        for row in summary.to_dict("records"):
            out.append({"group": row["group"], "quantity": quantity, "metric": metric,
                        "rank": rank(metric, direction), "direction": direction,
                        "mean": row["value"], "ci": row["upper"] - row["value"],
                        "n": int(row["n_seeds"]),
                        "n_total": int(seeds.get(row["group"], row["n_seeds"])),
                        "eps_unit": unit})
    return pd.DataFrame(out, columns=columns)


def _number(value: float) -> str:
    if np.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.4g}"


def robustness_order(long, order: list[str]) -> tuple[list[str], str | None]:
    """``order`` sorted from most to least robust, by the mean worst-case AUC (or, without
    a worst case, the mean AUC over attacks and conventions); unchanged, with ``None``,
    when the run has neither. Configurations without a value go last."""
    for metric in ("worst_case_auc", "auc"):
        part = long[long["metric"] == metric]
        if len(part):
            score = part.groupby("group")["mean"].mean()
            ranked = sorted(order, key=lambda g: -score[g] if g in score.index else np.inf)
            return ranked, metric
    return list(order), None


def summary_table(long, order: list[str], eps_scale: float = 1):
    """The summary table: one row per quantity, one column per configuration (every
    group of ``order``, empty where a configuration has no value, e.g. its cells
    failed), the best of each row in ``**bold**`` where the metric's better direction is
    known. Budgets and distances are shown in natural units."""
    import pandas as pd

    quantities = (long[["quantity", "rank"]].drop_duplicates()
                  .sort_values(["rank", "quantity"], kind="stable")["quantity"].tolist())
    groups = list(order) + sorted(set(long["group"]) - set(order))
    rows = []
    for quantity in quantities:
        part = long[long["quantity"] == quantity].set_index("group")
        direction = int(part["direction"].iloc[0])
        tm = part["eps_unit"].iloc[0]
        show = (lambda v, tm=tm: C.format_eps(v, tm, eps_scale)) if tm else _number
        means = part["mean"].reindex(groups)
        best = None
        if direction and means.notna().sum() >= 2:
            best = means.max() if direction > 0 else means.min()
        row = {"quantity": quantity}
        for group in groups:
            row[group] = ""
            if group not in part.index or np.isnan(part.at[group, "mean"]):
                continue
            mean, ci = part.at[group, "mean"], part.at[group, "ci"]
            text = show(mean) + ("" if np.isnan(ci) else f" ± {show(ci)}")
            if part.at[group, "n"] < part.at[group, "n_total"]:
                text += f" ({part.at[group, 'n']} of {part.at[group, 'n_total']} seeds)"
            if best is not None and (mean == best or np.isclose(mean, best, rtol=0,
                                                                 atol=1e-12)):
                text = f"**{text}**"
            row[group] = text
        rows.append(row)
    return pd.DataFrame(rows, columns=["quantity", *groups])


def _comparison(at, is_rate: bool, short: bool = False) -> str:
    """"**A** keeps 63% accuracy and **B** 32%" for the best and worst of ``at``
    (a Series of per-group values at one budget)."""
    ranked = at.sort_values(ascending=is_rate, kind="stable")
    best, worst = ranked.index[0], ranked.index[-1]
    at = at.rename(index=C.md)
    best, worst = C.md(best), C.md(worst)
    if is_rate:
        what = "" if short else "the attack succeeds on "
        if len(at) == 1:
            return f"{what}{C.percent(at[best])} of inputs against **{best}**"
        return (f"{what}{C.percent(at[best])} of inputs against **{best}** and "
                f"{C.percent(at[worst])} against **{worst}**")
    keeps = f"**{best}** keeps {C.percent(at[best])}" + ("" if short else " accuracy")
    return keeps if len(at) == 1 else f"{keeps} and **{worst}** {C.percent(at[worst])}"


def curve_sentences(run, keys: list[str]) -> list[str]:
    """One sentence per attack comparing the best and worst configuration (means over
    seeds of the ``robust_accuracy`` rows) where they differ most and at the eps grid's
    midpoint."""
    record = run.record()
    eps_scale = C.data_info(record)["eps_scale"]
    rows = C.curves(C.usable_metrics(run.metrics))
    rows = rows[rows["attack"] != "worst_case"]
    if not len(rows):
        return []
    curves = C.curve_means(rows, keys)
    statistic = rows.drop_duplicates("attack").set_index("attack")["statistic"]
    attack_order = list(record.attacks)
    attacks = [a for a in attack_order if a in set(curves["attack"])] + \
        sorted(set(curves["attack"]) - set(attack_order))
    sentences = []
    for attack in attacks:
        part = curves[curves["attack"] == attack]
        tm = part["threat_model"].iloc[0]
        is_rate = statistic[attack] != "accuracy"
        table = part.pivot_table(index="epsilon", columns="group", values="value",
                                 aggfunc="first").sort_index()
        mid = C.midpoint(table.index)
        at_mid = table.loc[mid].dropna()
        spread = (table.max(axis=1) - table.min(axis=1)).fillna(0)
        widest = float(spread.idxmax())
        tail = f" (best and worst of {len(at_mid)})" if len(at_mid) > 2 else ""
        head = f"Under **{C.md(attack)}** ({C.md(tm)}), "
        if len(at_mid) < 2 or widest == mid or spread.max() == 0:
            note = "the grid's midpoint" + (", where the configurations differ most"
                                            if len(at_mid) > 1 and widest == mid else "")
            sentences.append(f"{head}{C.eps_phrase(mid, tm, eps_scale)} ({note}), "
                             f"{_comparison(at_mid, is_rate)}{tail}.")
            continue
        at_widest = table.loc[widest].dropna()
        sentences.append(
            f"{head}the configurations differ most {C.eps_phrase(widest, tm, eps_scale)}: "
            f"{_comparison(at_widest, is_rate)}; {C.eps_phrase(mid, tm, eps_scale)} "
            f"(the grid's midpoint), {_comparison(at_mid, is_rate, short=True)}{tail}.")
    return sentences


def _table_notes(record, long, tables) -> str:
    """How to read the summary tables, mentioning only what they contain."""
    seeds = {c.cell.get("seed") for c in record.cells.values() if c.cell}
    cells = [v for t in tables for v in t.drop(columns="quantity").to_numpy().ravel()]
    notes = ["Values are means over " + (f"{len(seeds)} seeds ± the half-width of a 95% "
                                         "t-interval" if len(seeds) > 1 else "one seed")
             + "; the best value of each row is in **bold**, in the direction its metric "
             "declares (higher is better for accuracy and AUC, lower for gaps and attack "
             "success; unmarked rows have no direction)."]
    if any(v == "" for v in cells):
        notes.append("Blank: no value (the configuration's cells failed, or a breakdown "
                     "budget was never reached on the grid).")
    if any(v.endswith("seeds)") for v in cells):
        notes.append("\"k of n seeds\": the mean is over the seeds that have a value.")
    if (long["metric"] == "auc").any():
        notes.append("AUC is the area under accuracy-vs-eps on the grid shown in brackets, "
                     "divided by its range (1.0 = full accuracy at every budget).")
    if long["quantity"].str.contains("·").any():
        notes.append("Values under attack are unconditional (a sample misclassified when "
                     "clean counts as broken, Galloway et al.'s convention) unless marked \"on "
                     "clean-correct\" (over the samples classified correctly when clean, "
                     "Wen et al.'s).")
    return " ".join(notes)


class Summary(Reporter):
    """Summary table (clean accuracy, AUC per attack, worst case, any scalar metric) with
    the best value per column marked, and one sentence per attack comparing the best and
    worst configuration at the eps grid's midpoint."""

    name = "summary"

    def sections(self, run):
        record = run.record()
        keys = C.group_keys(record)
        long = summary_long(run, keys)
        sentences = curve_sentences(run, keys)
        if not len(long) and not sentences:
            return []
        tables = []
        order = C.group_order(record, keys)
        eps_scale = C.data_info(record)["eps_scale"]
        title = " / ".join(keys)
        robust = long[long["rank"] <= ROBUSTNESS_RANK]
        ranked, by = robustness_order(robust, order)
        for part, caption, columns in ((robust, "Robustness", ranked),
                                       (long[long["rank"] > ROBUSTNESS_RANK],
                                        "Other scalar metrics", order)):
            if len(part):
                table = summary_table(part, columns, eps_scale)
                table.attrs["title"] = f"{caption} (columns: {title})"
                tables.append(table)
        text = ["\n".join(f"- {s}" for s in sentences)] if sentences else []
        if by and len(ranked) > 1:
            label = {"worst_case_auc": "worst-case AUC", "auc": "AUC"}[by]
            text.append(f"Ranked by mean {label}, most robust first: "
                        + " > ".join(f"**{C.md(g)}**" for g in ranked) + ".")
        if tables:
            text.append(_table_notes(record, long, tables))
        return [ReportSection(title="Summary", text="\n\n".join(text), tables=tables,
                              order=10)]

    def compare(self, runs):
        """Per-run summary values side by side, with deltas against the first run."""
        import pandas as pd

        labels = list(runs)
        keys, order = C.runs_groups(r.record() for r in runs.values())
        merged = None
        for label, run in runs.items():
            long = summary_long(run, keys)[["group", "quantity", "rank", "direction", "mean"]]
            long = long.rename(columns={"mean": label})
            merged = long if merged is None else merged.merge(
                long, on=["group", "quantity", "rank", "direction"], how="outer")
        if merged is None or not len(merged):
            return []
        rank = {group: i for i, group in enumerate(order)}
        merged = merged.assign(_order=merged["group"].map(rank).fillna(len(rank)))
        merged = merged.sort_values(["rank", "quantity", "_order", "group"], ignore_index=True)
        group_title = " / ".join(keys)
        table = pd.DataFrame({group_title: merged["group"], "quantity": merged["quantity"]})
        for label in labels:
            table[label] = merged[label].map(lambda v: "" if np.isnan(v) else _number(v))
        sentences = []
        first = labels[0]
        for label in labels[1:]:
            delta = merged[label] - merged[first]
            table[f"Δ {label} − {first}"] = delta.map(
                lambda v: "" if np.isnan(v) else f"{v:+.3f}")
            known = merged.assign(delta=delta)[merged["direction"].ne(0) & delta.notna()]
            top = known.reindex(known["delta"].abs().sort_values(ascending=False).index)[:5]
            for row in top.to_dict("records"):
                if row["delta"] == 0:
                    continue
                verdict = "better" if np.sign(row["delta"]) == row["direction"] else "worse"
                sentences.append(
                    f"**{row['quantity']}** of **{row['group']}**: {_number(row[first])} "
                    f"in {first}, {_number(row[label])} in {label} "
                    f"({row['delta']:+.3f}, {verdict}).")
        hashes = {label: run.record().experiment.config_hash for label, run in runs.items()}
        same = len(set(hashes.values())) == 1
        intro = ("All runs share one configuration hash, so differences come from "
                 "randomness, hardware or library versions." if same else
                 "The runs' configurations differ (see the provenance comparison).")
        text = intro
        values = merged[labels].to_numpy(dtype=float)
        if np.allclose(values, values[:, :1], rtol=0, atol=0, equal_nan=True):
            text += " Every summary value is identical in all runs."
        if sentences:
            text += "\n\nLargest changes against the first run:\n\n" + \
                "\n".join(f"- {s}" for s in sentences)
        table.attrs["title"] = "Summary values per run (means over seeds)"
        return [ReportSection(title="Summary across runs", text=text, tables=[table],
                              order=10)]
