"""Rates of perturbed features of targeted L0 attacks, in every convention in use.

Galloway, Tanay & Taylor (2018), Adversarial Training Versus Weight Decay, Table 2,
report JSMA's "rate of perturbed features" as their evaluation script computes it: a
``num_classes x N`` array holds each (target, sample) attempt's changed fraction, the
row of each sample's own class stays 0, and the rate is the mean over the whole array;
their rate "for successful adversarial examples" is the mean of the same array with
failed attempts zeroed. Both are therefore ``(k - 1) / k`` times the corresponding mean
over the ``(k - 1) N`` attempts (0.9x on ten classes), and the second is not a mean over
successes. This metric reports them next to the plain means, so a reader can compare
with the paper and with papers that average over successes only.
"""

from __future__ import annotations

from robench import Metric

CONVENTIONS = {
    "authors_all": "sum of every attempt's changed fraction / (num_classes * N), as "
                   "Galloway et al.'s script averages its num_classes x N array",
    "authors_successful": "sum of the successful attempts' changed fractions / "
                          "(num_classes * N), the script's rate for successful examples",
    "attempts": "mean changed fraction over the attempts",
    "successes": "mean changed fraction over the successful attempts",
}
"""Convention name -> what the row averages (the ``convention`` column)."""


class PerturbationRate(Metric):
    """Rate of perturbed features of targeted L0 attacks, per (cell, attack, eps).

    Reads the targeted rows of ``l0`` attacks (``distance`` is the fraction of input
    values changed) and reports ``perturbation_rate`` in four conventions (column
    ``convention``): ``authors_all`` and ``authors_successful`` as Galloway, Tanay &
    Taylor (2018) computed Table 2 (means over a ``num_classes x N`` array whose
    own-class row is 0), and the plain means over ``attempts`` and over ``successes``.
    Every target tried counts as an attempt (run the attack with ``targets = "all"`` for
    the paper's protocol). The class count comes from the dataset recorded with the
    results.
    """

    name = "perturbation_rate"
    higher_is_better = None  # the authors' "successful" rate falls as robustness rises

    def from_results(self, results):
        import numpy as np
        import pandas as pd

        from . import _tables

        rows = _tables.data_rows(results)
        rows = rows[(rows["threat_model"] == "l0") & rows["target"].notna()]
        if not len(rows):
            return None
        classes = int(results.attrs.get("num_classes") or _tables.infer_num_classes(results))
        out = []
        keys = _tables.CELL + _tables.ATTACK + ["epsilon"]
        for key, group in rows.groupby(keys, sort=True, observed=True):
            distance = group["distance"].to_numpy(dtype="float64")
            success = group["success"].to_numpy(dtype=bool)
            cells = classes * group["sample"].nunique()
            values = {
                "authors_all": distance.sum() / cells,
                "authors_successful": distance[success].sum() / cells,
                "attempts": distance.mean(),
                "successes": distance[success].mean() if success.any() else np.nan,
            }
            for convention, value in values.items():
                out.append({**dict(zip(keys, key)), "metric": self.name,
                            "convention": convention, "value": float(value)})
        return pd.DataFrame(out)
