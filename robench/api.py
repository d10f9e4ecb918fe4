"""The Python API: the same engine as the CLI, for notebooks and scripts."""

from __future__ import annotations

from pathlib import Path

from .config import ExperimentSpec, load_experiment
from .plugins import Registry
from .record import RunRecord
from .results import RunStore


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
        """Render the report into the run directory; returns paths by format."""
        from .report import render_report

        if formats is None:
            formats = tuple(self.record.experiment.config.get("report", {})
                            .get("formats", ("html", "md")))
        return render_report(self.path, registry=self.registry, formats=formats)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r})"


def run(experiment: str | Path | ExperimentSpec, *, out: str | Path | None = None,
        device: str | None = None, progress: bool = True, report: bool = True,
        registry: Registry | None = None) -> Run:
    """Run (or resume) an experiment and render its report; returns the :class:`Run`."""
    from .runner import Runner

    spec = experiment if isinstance(experiment, ExperimentSpec) else \
        load_experiment(experiment, registry=registry)
    store = Runner(spec, out, device=device, progress=progress, registry=registry).run()
    result = Run(store.path, registry=registry)
    if report and spec.report_formats:
        result.report(spec.report_formats)
    return result


def load(run_dir: str | Path, *, registry: Registry | None = None) -> Run:
    """Open an existing run directory."""
    return Run(run_dir, registry=registry)
