"""Hand-built result frames for testing metrics (used by robench's own tests).

:func:`result_frame` fills every column of :data:`robench.results.RESULT_COLUMNS` that a
row does not give, deriving ``correct_clean``, ``correct_adv`` and ``success`` from the
labels and predictions the way the host does, so a test states only what it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DEFAULTS: dict[str, Any] = {
    "dataset": "toy", "model": "m", "defense": "none", "seed": 0, "attack": "pgd",
    "attack_component": "test.PGD", "library": "test", "library_version": "0",
    "threat_model": "linf", "epsilon": 0.0, "source": "data", "target": None,
    "distance": 0.0, "confidence": 0.9, "margin": 0.5,
}


def result_frame(rows: Iterable[Mapping[str, Any]], **defaults: Any):
    """A tidy result frame from ``rows`` (dicts); ``defaults`` override :data:`DEFAULTS`.

    Each row needs ``sample``, ``label`` (None for noise inputs), ``pred_clean`` and
    ``pred_adv``; ``cell`` defaults to ``model/defense/seed``.
    """
    import pandas as pd

    from robench.results import RESULT_COLUMNS

    base = {**DEFAULTS, **defaults}
    records = []
    for row in rows:
        rec = {**base, **row}
        rec.setdefault("cell", f"{rec['model']}/{rec['defense']}/{rec['seed']}")
        label, target = rec["label"], rec["target"]
        rec["correct_clean"] = label is not None and rec["pred_clean"] == label
        rec["correct_adv"] = label is not None and rec["pred_adv"] == label
        if "success" not in row:
            if target is not None:
                rec["success"] = rec["pred_adv"] == target
            else:
                rec["success"] = rec["pred_adv"] != (label if label is not None
                                                     else rec["pred_clean"])
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=list(RESULT_COLUMNS))
    frame["target"] = frame["target"].astype("Int64")
    frame["label"] = frame["label"].astype("Int64")
    frame["seed"] = frame["seed"].astype("int64")
    for col in ("epsilon", "distance", "confidence", "margin"):
        frame[col] = frame[col].astype("float64")
    for col in ("success", "correct_clean", "correct_adv"):
        frame[col] = frame[col].astype(bool)
    return frame
