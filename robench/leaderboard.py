"""The standard AutoAttack evaluation and a leaderboard-style JSON summary of a run.

:func:`autoattack_standard` spells out AutoAttack's "standard" version (Croce & Hein
(2020), Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks) as four torchattacks attacks with the reference settings made
explicit: APGD-CE and APGD-T (9 target classes) with 100 iterations, FAB-T (9 target
classes) with 100 iterations, and Square with 5,000 queries and the reference code's
square-size schedule (``resc_schedule = false``: not rescaled to the query budget), one
restart each.
torchattacks' own ``AutoAttack`` runs its APGD with 10 iterations, so it is not used. The
tables are ``[[attacks]]`` entries: pass them to :func:`robench.evaluate` or write them
into an experiment file. An input counts as robust when every attack of the ensemble
fails on it, which is what AutoAttack's sequential run reports.

:func:`summary` reads a run's metric rows and run record and returns what RobustBench's
leaderboard lists per model and threat model (clean and robust accuracy, attacks,
samples, budget, versions): the numbers are those of the ``worst_case`` and
``clean_accuracy`` metrics, never recomputed from the per-sample results.
:func:`write_leaderboard` writes it as ``leaderboard.json`` beside the report. A run
whose every threat model was attacked at a single budget is *leaderboard-shaped*
(:func:`leaderboard_budgets`; the preset is): rendering its report writes that file and
adds the ``leaderboard`` reporter's table. Any other run (an eps sweep) gets neither;
:func:`write_leaderboard` with an explicit ``eps`` ranks one budget of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_EPSILON = {"linf": 8 / 255, "l2": 0.5}
"""RobustBench's CIFAR-10 budgets per threat model."""

NORMS = {"linf": "Linf", "l2": "L2"}
ITERATIONS = 100
SQUARE_QUERIES = 5000
LEADERBOARD_FILE = "leaderboard.json"


def autoattack_standard(threat_model: str = "linf", eps: float | None = None,
                        samples: int | None = None) -> list[dict[str, Any]]:
    """The four ``[[attacks]]`` tables of AutoAttack "standard" at budget ``eps``
    (default: 8/255 for ``"linf"``, 0.5 for ``"l2"``) on the first ``samples`` inputs
    (default: all)."""
    if threat_model not in NORMS:
        raise ValueError(f"AutoAttack standard is defined for {sorted(NORMS)}, "
                         f"got {threat_model!r}")
    eps = DEFAULT_EPSILON[threat_model] if eps is None else eps
    common = {"norm": NORMS[threat_model], "n_restarts": 1, "epsilons": [eps]}
    if samples is not None:
        common["samples"] = samples
    return [
        {"name": "apgd-ce", "attack": "torchattacks.APGD", "loss": "ce",
         "steps": ITERATIONS, "rho": 0.75, "eot_iter": 1, **common},
        {"name": "apgd-t", "attack": "torchattacks.APGDT", "steps": ITERATIONS,
         "rho": 0.75, "eot_iter": 1, **common},
        {"name": "fab-t", "attack": "torchattacks.FAB", "multi_targeted": True,
         "steps": ITERATIONS, "alpha_max": 0.1, "eta": 1.05, "beta": 0.9, **common},
        {"name": "square", "attack": "torchattacks.Square", "n_queries": SQUARE_QUERIES,
         "p_init": 0.8, "loss": "margin", "resc_schedule": False, **common},
    ]


UNRANKED_THREAT_MODELS = ("unbounded",)
"""Threat models without a budget, which no leaderboard ranks."""

EPS_RTOL = 1e-9
"""Relative tolerance when matching a budget to the budgets a run recorded."""

ENSEMBLE_METRIC = "worst_case"
"""The metric whose ``worst_case_accuracy`` rows are an ensemble's robust accuracy."""

SINGLE_METRIC = "robust_accuracy"
"""The metric whose rows are one attack's robust accuracy (an ensemble of one)."""

CLEAN_METRIC = "clean_accuracy"
"""The metric whose rows are a cell's clean accuracy."""

CONVENTION = "unconditional"
"""Robust accuracy over every input, clean mistakes counting as not robust (AutoAttack's)."""


def leaderboard_budgets(record) -> dict[str, float] | None:
    """The budget of every threat model when a run is leaderboard-shaped, else None.

    A run (its :class:`robench.record.RunRecord`) is leaderboard-shaped when, as on
    RobustBench, each threat model was attacked at exactly one budget, the same for all
    of its attacks (the standard AutoAttack preset is; an eps sweep is not). Unbounded
    attacks are ignored.
    """
    grids: dict[str, set[float]] = {}
    for attack in record.attacks.values():
        if attack.threat_model not in UNRANKED_THREAT_MODELS:
            grids.setdefault(attack.threat_model, set()).update(attack.epsilons)
    if not grids or any(len(grid) != 1 for grid in grids.values()):
        return None
    return {threat_model: float(next(iter(grid))) for threat_model, grid in sorted(grids.items())}


def _ensembles(record, eps: float | None) -> dict[str, tuple[list[str], float]]:
    """Per ranked threat model, its attacks and the budget ranked: ``eps``, else the
    largest budget all of its attacks ran."""
    attacks: dict[str, list[str]] = {}
    for label, attack in record.attacks.items():
        if attack.threat_model not in UNRANKED_THREAT_MODELS:
            attacks.setdefault(attack.threat_model, []).append(label)
    return {threat_model: (sorted(labels), eps if eps is not None else
                           min(max(record.attacks[a].epsilons) for a in labels))
            for threat_model, labels in sorted(attacks.items())}


def _rows(metrics, metric: str, cell: str, threat_model: str | None = None,
          budget: float | None = None, attack: str | None = None):
    """The metric rows of ``metric`` for one cell (and threat model, budget, attack and
    the unconditional convention where given)."""
    if not {"cell", "threat_model", "epsilon", "attack", "convention"} <= set(metrics):
        return metrics.iloc[0:0]
    keep = (metrics["metric"] == metric) & (metrics["cell"] == cell)
    if threat_model is not None:
        keep &= metrics["threat_model"] == threat_model
        keep &= metrics["convention"] == CONVENTION
    if budget is not None:
        keep &= (metrics["epsilon"] - budget).abs() <= EPS_RTOL * max(1.0, budget)
    if attack is not None:
        keep &= metrics["attack"] == attack
    return metrics[keep]


def _not_used(metric: str) -> str:
    return f"the {metric} metric is not in the run's [metrics] use"


def _robust(metrics, used: set[str], cell: str, threat_model: str, budget: float,
            ensemble: list[str]) -> tuple[Any, list[str], str | None]:
    """The ensemble's robust-accuracy row of one cell (or None), the attacks of the
    ensemble it lacks, and why there is no row when a metric the run did not use would
    have given it."""
    if ENSEMBLE_METRIC in used:
        rows = _rows(metrics, "worst_case_accuracy", cell, threat_model, budget)
        combined = (rows["note"].iat[0].removeprefix("attacks: ").split(",")
                    if len(rows) else [])
        return (rows.iloc[0] if len(rows) else None,
                sorted(set(ensemble) - set(combined)), None)
    if len(ensemble) == 1 and SINGLE_METRIC in used:
        rows = _rows(metrics, "robust_accuracy", cell, threat_model, budget, ensemble[0])
        return (rows.iloc[0] if len(rows) else None, [] if len(rows) else ensemble, None)
    return None, [], _not_used(ENSEMBLE_METRIC)


def summary(metrics, record, eps: float | None = None) -> list[dict[str, Any]]:
    """One leaderboard entry per cell (dataset, model, defense, seed) and threat model
    of a run, read from its metric rows and its :class:`robench.record.RunRecord`.

    The ensemble of a threat model is every attack of it; ``eps`` is the budget (default:
    per threat model, the largest one all of its attacks ran). Robust accuracy is the
    unconditional ``worst_case_accuracy`` row of the ``worst_case`` metric (the fraction
    of inputs every attack of the ensemble failed on, clean mistakes counting as not
    robust; its bootstrap interval in ``robust_interval``), or for an ensemble of one
    attack the ``robust_accuracy`` row when the run did not use ``worst_case``; clean
    accuracy is the ``clean_accuracy`` row. Nothing is computed here: a number whose
    metric is not in the run's ``[metrics] use`` is None and ``notes`` says so. A cell
    on which some attack of the ensemble has no results (its unit failed) lists them in
    ``missing_attacks`` and has no robust accuracy (None), never an overstated one.
    """
    import pandas as pd

    used = set(record.experiment.config.get("metrics", {}).get("use", []))
    versions = {k: v for k, v in record.versions.items() if isinstance(v, str)}
    config = record.experiment.config.get("attacks", [])
    settings = {a.get("name", a.get("attack")): a for a in config}
    entries = []
    for cell_id, cell_record in sorted(record.cells.items()):
        if cell_record.status != "done":
            continue
        cell = cell_record.cell
        clean = _rows(metrics, "clean_accuracy", cell_id) if CLEAN_METRIC in used else None
        for threat_model, (ensemble, budget) in _ensembles(record, eps).items():
            row, missing, reason = _robust(metrics, used, cell_id, threat_model, budget,
                                           ensemble)
            notes = [reason] if reason else []
            if clean is None:
                notes.append(_not_used(CLEAN_METRIC))
            units = {u.attack: u for u in record.units.values()
                     if u.cell == cell_id and u.attack in ensemble}
            interval = None
            if row is not None and pd.notna(row.get("lower")):
                interval = [float(row["lower"]), float(row["upper"])]
            entries.append({
                "dataset": cell["dataset"], "model": cell["model"],
                "defense": cell["defense"], "seed": int(cell["seed"]),
                "threat_model": threat_model, "epsilon": float(budget),
                "samples": None if row is None else int(row["n"]),
                "clean_accuracy": (float(clean["value"].iat[0])
                                   if clean is not None and len(clean) else None),
                "robust_accuracy": (None if row is None or missing
                                    else float(row["value"])),
                "robust_interval": None if missing else interval,
                "missing_attacks": missing,
                "notes": notes,
                "attacks": {a: {"library": units[a].library if a in units
                                else record.attacks[a].library,
                                "library_version": units[a].library_version
                                if a in units else None,
                                "settings": {k: v for k, v in settings.get(a, {}).items()
                                             if k not in ("name", "epsilons")}}
                            for a in ensemble},
                "versions": versions,
            })
    return entries


def leaderboard(run, eps: float | None = None) -> list[dict[str, Any]]:
    """:func:`summary` of a run (a :class:`robench.api.Run` or a
    :class:`robench.results.RunStore`)."""
    store = getattr(run, "store", run)
    return summary(store.metrics, store.record(), eps)


def write_leaderboard(run, eps: float | None = None,
                      path: str | Path | None = None) -> Path:
    """Write :func:`leaderboard` of ``run`` as JSON (default: ``leaderboard.json`` in the
    run directory, beside the report); return the path."""
    entries = leaderboard(run, eps)
    path = Path(path) if path is not None else Path(run.path) / LEADERBOARD_FILE
    path.write_text(json.dumps(entries, indent=2, default=str) + "\n")
    return path


def write_if_leaderboard_shaped(run) -> Path | None:
    """Write ``leaderboard.json`` beside the report when the run is leaderboard-shaped
    (:func:`leaderboard_budgets`); return its path, or None for any other run (which
    can still call :func:`write_leaderboard` with the budget it wants ranked).
    :meth:`robench.api.Run.report` calls it after rendering the report."""
    store = getattr(run, "store", run)
    if leaderboard_budgets(store.record()) is None:
        return None
    return write_leaderboard(run)
