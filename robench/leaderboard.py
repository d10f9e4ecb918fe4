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

:func:`summary` reads a run's tidy results and returns what RobustBench's leaderboard
lists per model and threat model (clean and robust accuracy, attacks, samples, budget,
versions); :func:`write_leaderboard` writes it as ``leaderboard.json`` beside the report.
A run whose every threat model was attacked at a single budget is *leaderboard-shaped*
(:func:`leaderboard_budgets`; the preset is): rendering its report writes that file and
adds the ``leaderboard`` reporter's table. Any other run (an eps sweep) gets neither;
:func:`write_leaderboard` with an explicit ``eps`` ranks one budget of it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def leaderboard_budgets(results) -> dict[str, float] | None:
    """The budget of every threat model when a run is leaderboard-shaped, else None.

    A run is leaderboard-shaped when, as on RobustBench, each threat model of its data
    inputs was attacked at exactly one budget, the same for all of its attacks (the
    standard AutoAttack preset is; an eps sweep is not). Unbounded attacks are ignored.
    """
    frame = results[(results["source"] == "data")
                    & ~results["threat_model"].isin(UNRANKED_THREAT_MODELS)]
    budgets = {}
    for threat_model, group in frame.groupby("threat_model", sort=True):
        values = group["epsilon"].unique()
        if len(values) != 1:
            return None
        budgets[str(threat_model)] = float(values[0])
    return budgets or None


def summary(results, attacks: Sequence[str] | None = None, eps: float | None = None,
            versions: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One leaderboard entry per (dataset, model, defense, seed, threat model) of a tidy
    result frame.

    ``attacks`` are the attack labels forming the ensemble (default: every attack); the
    ensemble of a threat model is its attacks among them. ``eps`` is the budget (default:
    per threat model, the largest one all of its attacks ran). Robust accuracy is the
    fraction of inputs every attack of the ensemble failed on (clean mistakes count as
    not robust); clean accuracy is measured on the same inputs. A configuration on which
    some attack of the ensemble has no results at the budget (its unit failed) lists them
    in ``missing_attacks`` and has no robust accuracy (None), never an overstated one.
    """
    frame = results[(results["source"] == "data")
                    & ~results["threat_model"].isin(UNRANKED_THREAT_MODELS)]
    attacks = sorted(frame["attack"].unique()) if attacks is None else list(attacks)
    missing = sorted(set(attacks) - set(frame["attack"]))
    if missing:
        raise ValueError(f"no results for attack(s) {missing}")
    frame = frame[frame["attack"].isin(attacks)]
    entries = []
    for threat_model, per_threat in frame.groupby("threat_model", sort=True):
        ensemble = sorted(per_threat["attack"].unique())
        budget = min(per_threat.groupby("attack")["epsilon"].max()) if eps is None else eps
        at_eps = per_threat[(per_threat["epsilon"] - budget).abs()
                            <= EPS_RTOL * max(1.0, budget)]
        for (dataset, model, defense, seed), group in at_eps.groupby(
                ["dataset", "model", "defense", "seed"], sort=True):
            missing = sorted(set(ensemble) - set(group["attack"]))
            per_sample = group.groupby("sample").agg(clean=("correct_clean", "all"),
                                                     robust=("correct_adv", "all"))
            robust = (per_sample["robust"] & per_sample["clean"]).mean()
            entries.append({
                "dataset": dataset, "model": model, "defense": defense, "seed": int(seed),
                "threat_model": str(threat_model), "epsilon": float(budget),
                "samples": len(per_sample),
                "clean_accuracy": float(per_sample["clean"].mean()),
                "robust_accuracy": None if missing else float(robust),
                "missing_attacks": missing,
                "attacks": {a: {"library": g["library"].iat[0],
                                "library_version": g["library_version"].iat[0]}
                            for a, g in group.groupby("attack", sort=True)},
                "versions": versions or {},
            })
    return entries


def leaderboard(run, attacks: Sequence[str] | None = None,
                eps: float | None = None) -> list[dict[str, Any]]:
    """:func:`summary` of a run (a :class:`robench.api.Run` or a
    :class:`robench.results.RunStore`), with the package versions of run.json and each
    attack's settings as recorded in the run's configuration."""
    store = getattr(run, "store", run)
    record = store.read_run()  # run.json as stored
    versions = {k: v for k, v in record.get("versions", {}).items() if isinstance(v, str)}
    entries = summary(store.results, attacks, eps, versions=versions)
    config = record.get("experiment", {}).get("config", {})
    settings = {a.get("name", a.get("attack")): a for a in config.get("attacks", [])}
    for entry in entries:
        for label, info in entry["attacks"].items():
            info["settings"] = {k: v for k, v in settings.get(label, {}).items()
                                if k not in ("name", "epsilons")}
    return entries


def write_leaderboard(run, attacks: Sequence[str] | None = None, eps: float | None = None,
                      path: str | Path | None = None) -> Path:
    """Write :func:`leaderboard` of ``run`` as JSON (default: ``leaderboard.json`` in the
    run directory, beside the report); return the path."""
    entries = leaderboard(run, attacks, eps)
    path = Path(path) if path is not None else Path(run.path) / LEADERBOARD_FILE
    path.write_text(json.dumps(entries, indent=2, default=str) + "\n")
    return path


def write_if_leaderboard_shaped(run) -> Path | None:
    """Write ``leaderboard.json`` beside the report when the run is leaderboard-shaped
    (:func:`leaderboard_budgets`); return its path, or None for any other run (which
    can still call :func:`write_leaderboard` with the budget it wants ranked).
    :meth:`robench.api.Run.report` calls it after rendering the report."""
    store = getattr(run, "store", run)
    if leaderboard_budgets(store.results) is None:
        return None
    return write_leaderboard(run)
