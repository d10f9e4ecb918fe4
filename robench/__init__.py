"""robench: a plugin-based benchmarking harness for adversarial robustness.

Public API (everything else is internal)::

    import robench
    run = robench.run("benchmarks/quickstart.toml", out="runs/quickstart")
    run.results      # tidy per-sample frame
    run.metrics      # tidy metrics frame
    run.report()     # writes report.html and report.md
    robench.load("runs/quickstart")   # a finished run, without recomputing

Plugin authors subclass the components below and register them with ``@hookimpl``
functions (see :mod:`robench.hookspecs`). Importing robench never imports torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

import pluggy

from .components import (
    Attack,
    AttackProperties,
    AttackResult,
    CellData,
    Component,
    DataInfo,
    Dataset,
    Defense,
    Executor,
    FixedBudgetAttack,
    LoadedData,
    Metric,
    MinimalAttack,
    Model,
    Reporter,
    ReportSection,
    ThreatModel,
    TrainingContext,
)
from .errors import ConfigError, PluginError, RobenchError
from .record import RunRecord

hookimpl = pluggy.HookimplMarker("robench")
"""Marker for plugin hook implementations (``@robench.hookimpl``)."""


def run(experiment, *, out=None, device=None, progress=True, report=True, overrides=None):
    """Run an experiment file (path) and return its :class:`robench.api.Run`.

    Finished units in ``out`` are reused, so calling it again resumes. ``device`` is
    ``"auto"``, ``"cpu"`` or ``"cuda[:N]"`` and overrides the file's setting; the report
    is rendered into the run directory unless ``report=False``. ``overrides`` change
    values of the file as ``robench run -o KEY=VALUE`` does:
    ``{"training.epochs": 3, "models[0].hidden": [64]}``.
    """
    from .api import run as _run

    return _run(experiment, out=out, device=device, progress=progress, report=report,
                overrides=overrides)


def load(run_dir):
    """Open a finished (or partial) run directory as a :class:`robench.api.Run`."""
    from .api import load as _load

    return _load(run_dir)


def evaluate(model, x, y, attacks, epsilons=None, **options):
    """Attack a ``torch.nn.Module`` on tensors ``x``, ``y`` (no experiment file, no
    training) and return the :class:`robench.api.Run` of that one-cell experiment, with
    the same results, metrics and report as a run; see
    :func:`robench.module_evaluation.evaluate` for the options."""
    from .module_evaluation import evaluate as _evaluate

    return _evaluate(model, x, y, attacks, epsilons, **options)


__all__ = [
    "Attack", "AttackProperties", "AttackResult", "CellData", "Component", "ConfigError",
    "DataInfo", "Dataset", "Defense", "Executor", "FixedBudgetAttack", "LoadedData", "Metric",
    "MinimalAttack", "Model",
    "PluginError", "ReportSection", "Reporter", "RobenchError", "RunRecord", "ThreatModel",
    "TrainingContext", "__version__", "evaluate", "hookimpl", "load", "run",
]
