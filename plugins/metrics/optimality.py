"""How close each attack comes to the best attack of the run, after AttackBench.

Cinà et al. (2024), AttackBench: Evaluating Gradient-based Attacks for Adversarial
Examples, score an attack by comparing its robust-accuracy curve with the curve of the
best adversarial examples any attack found. robench measures it on the budget grid, per
cell and threat model:

- each attack's per-sample distance ``d_a`` is the smallest budget at which it broke the
  sample (over every target; ``inf`` when it never did; 0 for a sample misclassified
  when clean, whose clean input is already adversarial). On the grid this is what a
  minimal-distance attack's own distance becomes, and all a fixed-budget attack can
  tell (its perturbations fill the budget, so their size says nothing more);
- the best distance ``d*`` of a sample is the smallest ``d_a`` over the attacks;
- at each budget ``e`` of the grid the attacks share, an attack's curve is the fraction
  of samples with ``d_a > e``, the worst-case curve the fraction with ``d* > e``, and the
  curve of an attack that finds nothing is the clean accuracy.

The optimality is one minus the area between the attack's curve and the worst-case
curve, divided by the area between the clean-accuracy line and the worst-case curve,
both by the trapezoid rule over the shared grid (with a single budget, the values at
it)::

    optimality = 1 - area(acc_a - acc*) / area(clean - acc*)

1 for an attack that broke every sample at the best budget found, 0 for one that broke
none. Samples misclassified when clean add nothing to either area, so both
robust-accuracy conventions give the same score.
"""

from __future__ import annotations

import dataclasses

from robench import Metric

SKIPPED_THREAT_MODELS = ("unbounded",)
"""Threat models without a budget: their distances are not comparable."""


@dataclasses.dataclass(frozen=True)
class OptimalityOptions:
    per_sample: bool = dataclasses.field(
        default=False, metadata={"help": "also emit one broken_at row per (attack, sample): "
                                         "the smallest budget at which the attack broke "
                                         "it, with the best of any attack in best_broken_at"})


def sample_distances(results):
    """Per (cell, threat model, attack, sample): ``distance``, the smallest budget at
    which the attack broke the sample (``inf``: never; 0: misclassified when clean),
    ``best_distance``, the smallest over the attacks of the cell and threat model, and
    ``correct_clean``, over the samples every attack of the group attacked; with the
    group's shared ``grid`` (a tuple of budgets), its ``attacks`` (comma-separated) and
    ``left_out`` (samples not attacked by every attack). Groups with a single attack are
    left out.
    """
    import numpy as np
    import pandas as pd

    from ._tables import ATTACK, CELL, data_rows

    data = data_rows(results)
    data = data[~data["threat_model"].isin(SKIPPED_THREAT_MODELS)]
    if data.empty:
        return pd.DataFrame()
    keys = CELL + ATTACK + ["sample"]
    frame = data[keys + ["epsilon", "success", "correct_clean"]].copy()
    frame["broken_at"] = np.where(frame["success"].astype(bool), frame["epsilon"], np.inf)
    dist = frame.groupby(keys, sort=True, dropna=False).agg(
        distance=("broken_at", "min"), correct_clean=("correct_clean", "all")).reset_index()
    dist.loc[~dist["correct_clean"], "distance"] = 0.0
    grids = data.groupby(CELL + ATTACK, dropna=False)["epsilon"].agg(set)
    frames = []
    for key, group in dist.groupby(CELL + ["threat_model"], sort=True, dropna=False):
        attacks = sorted(group["attack"].unique())
        if len(attacks) < 2:
            continue
        per_attack = group.groupby("attack")["sample"].agg(set)
        common = set.intersection(*per_attack)
        group = group[group["sample"].isin(common)].copy()
        group["best_distance"] = group.groupby("sample")["distance"].transform("min")
        group["grid"] = [tuple(sorted(set.intersection(
            *(grids[key[:-1] + (a, key[-1])] for a in attacks))))] * len(group)
        group["attacks"] = ",".join(attacks)
        group["left_out"] = len(set.union(*per_attack) - common)
        frames.append(group)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def grid_area(grid, values) -> float:
    """Trapezoid area of ``values`` over the budgets ``grid``; with one budget, the value
    at it."""
    import numpy as np

    values = np.asarray(values, dtype="float64")
    return float(values[0]) if len(grid) == 1 else float(np.trapezoid(values, grid))


def optimality(results, *, per_sample: bool = False):
    """Tidy ``optimality`` rows per (cell, threat model, attack) with ``eps_min``,
    ``eps_max``, ``n_eps`` (the shared grid), ``n`` (samples compared) and ``note``; with
    ``per_sample`` also ``broken_at`` rows (see :class:`Optimality`)."""
    import numpy as np
    import pandas as pd

    from ._tables import CELL

    table = sample_distances(results)
    if table.empty:
        return pd.DataFrame()
    group_keys = CELL + ["threat_model"]
    rows = []
    for key, group in table.groupby(group_keys, sort=True, dropna=False):
        grid = np.array(group["grid"].iat[0], dtype="float64")
        left_out = int(group["left_out"].iat[0])
        notes = [f"compared with {group['attacks'].iat[0]}"]
        if left_out:
            notes.append(f"{left_out} sample(s) not attacked by every attack were left out")
        if not len(grid):
            notes.append("the attacks share no budget")
            room = 0.0
        else:
            best = group.drop_duplicates("sample")
            worst_case = (best["best_distance"].to_numpy()[:, None] > grid).mean(0)
            room = grid_area(grid, best["correct_clean"].mean() - worst_case)
            if room <= 0:
                notes.append("no attack broke a clean-correct sample on the shared budgets")
        for attack, part in group.groupby("attack", sort=True):
            value = float("nan")
            if room > 0:
                curve = (part["distance"].to_numpy()[:, None] > grid).mean(0)
                value = 1.0 - grid_area(grid, curve - worst_case) / room
            rows.append({**dict(zip(group_keys, key)), "attack": attack,
                         "metric": "optimality", "value": value,
                         "eps_min": float(grid[0]) if len(grid) else float("nan"),
                         "eps_max": float(grid[-1]) if len(grid) else float("nan"),
                         "n_eps": len(grid), "n": len(part), "note": "; ".join(notes)})
    frames = [pd.DataFrame(rows)]
    if per_sample:
        samples = table.rename(columns={"distance": "value",
                                        "best_distance": "best_broken_at"})
        frames.append(samples.drop(columns=["correct_clean", "grid", "attacks", "left_out"])
                      .assign(metric="broken_at"))
    return pd.concat(frames, ignore_index=True)


class Optimality(Metric):
    """AttackBench's optimality of every attack against the best attack of the run.

    Per cell and threat model with at least two attacks (Cinà et al. (2024), AttackBench:
    Evaluating Gradient-based Attacks for Adversarial Examples): one minus the area
    between the attack's robust-accuracy curve and the worst-case curve (from the
    smallest budget at which any attack broke each sample), divided by the area between
    the clean accuracy and the worst-case curve, over the budgets every attack of the
    group ran. 1: the attack broke every sample at the best budget found; 0: it broke
    none; NaN when no attack broke any.

    Rows: ``optimality`` per (cell, threat model, attack) with ``eps_min``, ``eps_max``,
    ``n_eps`` (the shared grid), ``n`` (samples every attack of the group attacked) and
    ``note``; with ``per_sample``, ``broken_at`` per (attack, sample) with
    ``best_broken_at``. The score ranks attacks, not defenses, so it has no direction
    for the defender.
    """

    name = "optimality"
    higher_is_better = None
    Options = OptimalityOptions

    def from_results(self, results):
        from . import _tables

        return _tables.or_none(optimality(results, per_sample=self.options.per_sample))
