"""How close each attack comes to the best attack of the run, after AttackBench.

Cinà et al. (2024), AttackBench: Evaluating Gradient-based Attacks for Adversarial
Examples, score an attack by comparing its robust-accuracy curve with the curve of the
best adversarial examples any attack found. Here, per cell and threat model:

- each attack's per-sample distance ``d_a`` is the smallest host-measured distance of its
  successful rows over every budget and target (``inf`` when it never succeeded; 0 for a
  sample misclassified when clean, whose clean input is already adversarial);
- the best distance ``d*`` of a sample is the smallest ``d_a`` over the attacks;
- an attack's curve is the fraction of samples with ``d_a > eps``, the worst-case curve
  the fraction with ``d* > eps``, and the curve of an attack that finds nothing is the
  clean accuracy. Over ``[0, E]``, ``E`` the largest budget every attack of the group
  swept, these step curves have exact areas: the mean of ``min(d, E)`` (``E`` per
  clean-correct sample for the clean curve).

The optimality is one minus the area between the attack's curve and the worst-case curve,
divided by the area between the clean-accuracy line and the worst-case curve::

    optimality = 1 - sum(min(d_a, E) - min(d*, E)) / sum(E [clean-correct] - min(d*, E))

1 for an attack that found the best distance on every sample, 0 for one that found
nothing within ``E``. Samples misclassified when clean add nothing to either sum, so
both robust-accuracy conventions give the same score.
"""

from __future__ import annotations

import dataclasses

from robench import Metric

SKIPPED_THREAT_MODELS = ("unbounded",)
"""Threat models without a budget: their distances are not comparable."""


@dataclasses.dataclass(frozen=True)
class OptimalityOptions:
    per_sample: bool = dataclasses.field(
        default=False, metadata={"help": "also emit one attack_distance row per (attack, "
                                         "sample): the attack's distance, with the best "
                                         "distance of any attack in best_distance"})


def sample_distances(results):
    """Per (cell, threat model, attack, sample): the attack's distance ``distance``, the
    best distance of any attack of the cell and threat model ``best_distance`` and
    ``correct_clean``, over the samples every attack of the group attacked; with the
    group's ``eps_max``, its ``attacks`` (comma-separated) and ``left_out`` (samples not
    attacked by every attack). Groups with a single attack are left out.
    """
    import pandas as pd

    from ._tables import ATTACK, CELL, data_rows, minimal_distances

    per_target = minimal_distances(results)
    if per_target.empty:
        return pd.DataFrame()
    per_target = per_target[~per_target["threat_model"].isin(SKIPPED_THREAT_MODELS)]
    keys = CELL + ATTACK + ["sample"]
    dist = per_target.groupby(keys, sort=True, dropna=False).agg(
        distance=("distance", "min"), correct_clean=("correct_clean", "all")).reset_index()
    dist.loc[~dist["correct_clean"], "distance"] = 0.0
    swept = data_rows(results).groupby(CELL + ATTACK, dropna=False)["epsilon"].max()
    frames = []
    for _, group in dist.groupby(CELL + ["threat_model"], sort=True, dropna=False):
        attacks = sorted(group["attack"].unique())
        if len(attacks) < 2:
            continue
        per_attack = group.groupby("attack")["sample"].agg(set)
        common = set.intersection(*per_attack)
        group = group[group["sample"].isin(common)].copy()
        group["best_distance"] = group.groupby("sample")["distance"].transform("min")
        first = group.iloc[0]
        group["eps_max"] = min(float(swept[tuple(first[c] for c in CELL) +
                                           (a, first["threat_model"])]) for a in attacks)
        group["attacks"] = ",".join(attacks)
        group["left_out"] = len(set.union(*per_attack) - common)
        frames.append(group)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def optimality(results, *, per_sample: bool = False):
    """Tidy ``optimality`` rows per (cell, threat model, attack) with ``eps_max``, ``n``
    (samples compared) and ``note``; with ``per_sample`` also ``attack_distance`` rows
    (see :class:`Optimality`)."""
    import numpy as np
    import pandas as pd

    from ._tables import CELL

    table = sample_distances(results)
    if table.empty:
        return pd.DataFrame()
    group_keys = CELL + ["threat_model"]
    rows = []
    for key, group in table.groupby(group_keys, sort=True, dropna=False):
        eps_max, left_out = float(group["eps_max"].iat[0]), int(group["left_out"].iat[0])
        best = group.drop_duplicates("sample")
        capped_best = np.minimum(best["best_distance"].to_numpy(), eps_max)
        room = float(np.sum(np.where(best["correct_clean"], eps_max, 0.0) - capped_best))
        notes = [f"compared with {group['attacks'].iat[0]} up to eps {eps_max:g}"]
        if left_out:
            notes.append(f"{left_out} sample(s) not attacked by every attack were left out")
        if room <= 0:
            notes.append("no attack found an adversarial example within eps_max")
        for attack, part in group.groupby("attack", sort=True):
            gap = float(np.sum(np.minimum(part["distance"].to_numpy(), eps_max)
                               - np.minimum(part["best_distance"].to_numpy(), eps_max)))
            rows.append({**dict(zip(group_keys, key)), "attack": attack,
                         "metric": "optimality",
                         "value": 1.0 - gap / room if room > 0 else float("nan"),
                         "eps_max": eps_max, "n": len(part), "note": "; ".join(notes)})
    frames = [pd.DataFrame(rows)]
    if per_sample:
        samples = table.rename(columns={"distance": "value"})
        frames.append(samples.drop(columns=["correct_clean", "attacks", "left_out"])
                      .assign(metric="attack_distance"))
    return pd.concat(frames, ignore_index=True)


class Optimality(Metric):
    """AttackBench's optimality of every attack against the best attack of the run.

    Per cell and threat model with at least two attacks (Cinà et al. (2024), AttackBench:
    Evaluating Gradient-based Attacks for Adversarial Examples): one minus the area
    between the attack's robust-accuracy curve and the worst-case curve (from the best
    distance any attack found per sample), divided by the area between the clean
    accuracy and the worst-case curve, over ``[0, eps_max]`` (the largest budget every
    attack of the group swept). 1: the attack found the best adversarial example of
    every sample; 0: it found none within ``eps_max``; NaN when no attack found any.

    Rows: ``optimality`` per (cell, threat model, attack) with ``eps_max``, ``n``
    (samples every attack of the group attacked) and ``note``; with ``per_sample``,
    ``attack_distance`` per (attack, sample) with ``best_distance``. The score ranks
    attacks, not defenses, so it has no direction for the defender.
    """

    name = "optimality"
    higher_is_better = None
    Options = OptimalityOptions

    def from_results(self, results):
        from . import _tables

        return _tables.or_none(optimality(results, per_sample=self.options.per_sample))
