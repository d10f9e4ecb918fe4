"""The Python API: the same engine as the CLI, for notebooks and scripts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ExperimentSpec, load_experiment, parse_experiment, stable_hash
from .plugins import Registry
from .record import RunRecord
from .results import RunStore

REPORT_FINGERPRINT = "report_fingerprint"
"""run.json key of the fingerprint of the state the rendered report shows."""

VOLATILE = ("started", "finished", "duration_s", "git_commit", REPORT_FINGERPRINT)
"""run.json keys that change on every run without changing what a report shows."""


def report_fingerprint(record: RunRecord, formats: tuple[str, ...]) -> str:
    """A hash of everything in ``record`` a report shows (not the timestamps) and of the
    report's formats."""
    state = {k: v for k, v in record.to_dict().items() if k not in VOLATILE}
    return stable_hash({"record": state, "formats": list(formats)})


class Run:
    """A run directory, finished or partial.

    ``record`` is run.json as a typed :class:`robench.record.RunRecord`; ``results``
    and ``metrics`` are tidy pandas DataFrames read from the directory; ``report()``
    (re)renders report.html / report.md from stored results alone.
    """

    def __init__(self, path: str | Path, *, registry: Registry | None = None):
        self.store = RunStore(path)
        self.registry = registry
        self.record: RunRecord = self.store.record()

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def status(self) -> str:
        """``done``, ``failed`` (some cell or unit failed), ``running`` or ``interrupted``."""
        return self.record.status

    @property
    def results(self):
        """One row per (cell, attack, epsilon, sample, target)."""
        return self.store.results

    @property
    def metrics(self):
        """Tidy metric rows (``metric``, ``value`` and grouping columns)."""
        return self.store.metrics

    @property
    def histories(self):
        """Per-epoch train/test loss and accuracy of every trained cell."""
        return self.store.histories

    def failures(self) -> dict[str, str]:
        """Every failure by id (failed cells and units, metrics that raised as
        ``metric:NAME``), with its error message; see :meth:`RunRecord.failures`."""
        return self.record.failures()

    def report(self, formats: tuple[str, ...] | None = None) -> dict[str, Path]:
        """Render the report into the run directory; returns paths by format.

        Reporters that raise are recorded in run.json (``reporter_errors``), so they are
        among :meth:`failures` and a finished run's status is ``failed``; the record
        also keeps the fingerprint of the state the report shows (see
        :meth:`report_is_current`).
        """
        from .leaderboard import write_if_leaderboard_shaped
        from .report import render_report

        if formats is None:
            formats = tuple(self.record.experiment.config.get("report", {})
                            .get("formats", ("html", "md")))
        errors: dict[str, str] = {}
        paths = render_report(self.path, registry=self.registry, formats=formats,
                              errors=errors)
        write_if_leaderboard_shaped(self)
        self.record = self.store.record()
        self.record.extra["reporter_errors"] = errors
        if self.record.status in ("done", "failed"):
            self.record.status = "failed" if self.record.failures() else "done"
        self.record.extra[REPORT_FINGERPRINT] = report_fingerprint(self.record, formats)
        self.store.write_record(self.record)
        return paths

    def report_is_current(self, formats: tuple[str, ...]) -> bool:
        """Whether the report files of ``formats`` exist and show the stored state: the
        fingerprint recorded when they were rendered matches the record's now."""
        return (not self.record.extra.get("reporter_errors")
                and self.record.extra.get(REPORT_FINGERPRINT)
                == report_fingerprint(self.record, formats)
                and all((self.path / f"report.{fmt}").is_file() for fmt in formats))

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r})"


def run(experiment: str | Path | ExperimentSpec, *, out: str | Path | None = None,
        device: str | None = None, progress: bool = True, report: bool = True,
        registry: Registry | None = None, overrides: Mapping[str, Any] | None = None) -> Run:
    """Run (or resume) an experiment and render its report; returns the :class:`Run`.

    ``overrides`` change values of the experiment before it is validated, as ``robench
    run -o KEY=VALUE`` does: ``{"training.epochs": 3, "models[0].hidden": [64]}`` (values
    as given; see :mod:`robench.overrides`).
    """
    from .runner import Runner

    if isinstance(experiment, ExperimentSpec):
        spec = experiment if not overrides else parse_experiment(
            experiment.raw, file=experiment.file, registry=registry, overrides=overrides)
    else:
        spec = load_experiment(experiment, registry=registry, overrides=overrides)
    store = Runner(spec, out, device=device, progress=progress, registry=registry).run()
    result = Run(store.path, registry=registry)
    if report and spec.report_formats and not result.report_is_current(spec.report_formats):
        result.report(spec.report_formats)
    return result


def load(run_dir: str | Path, *, registry: Registry | None = None) -> Run:
    """Open an existing run directory."""
    return Run(run_dir, registry=registry)
