"""``run.json`` as typed objects: the provenance and status record of a run.

:class:`RunRecord` is what the runner writes and what reporters, ``robench report`` and
the Python API read; nothing reads ``run.json`` as an untyped dict. The record is
versioned by :data:`SCHEMA_VERSION`: a file written by an older robench (no
``schema_version`` key) is read as version 1, and a file from a newer robench is refused
with a clear message rather than misread.

Layout (JSON)::

    schema_version, robench_version, status, started, finished, duration_s,
    experiment: {name, file, config, config_hash}
    data:       {name, input_shape, num_classes, bounds, eps_scale, ..., n_train, n_test}
    versions:   {python, robench, torch, ..., plugins: {package: version}}
    git_commit, device, seeds
    attacks:    {label: {component, library, threat_model, epsilons, source}}
    cells:      {cell id: {cell: {dataset, model, defense, seed, cell}, key, key_material,
                           status, ...}}
    units:      {unit id: {cell, attack, key, key_material, status, seconds, rows, ...}}
    kept:       {cell or unit id: ["what old version (now new version)", ...]}
                (results kept across a version change; absent when none)
    metric_errors: {metric name: traceback}
    reporter_errors: {reporter name: traceback}  (reporters that raised; kept in ``extra``)

The column schemas of the tables beside it are in :mod:`robench.schema`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .errors import RobenchError

SCHEMA_VERSION = 1
"""Version of the ``run.json`` layout this robench writes and reads."""

STATUSES = ("pending", "running", "done", "failed", "interrupted")
"""Statuses of a run, cell or unit (cells also pass through ``trained``)."""


SINCE_VERSION_1 = {"optional": True}
"""Metadata of a field added after layout version 1: written only when set, so a record
written before it round-trips unchanged."""


def _known(cls: type, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``raw`` into the fields of dataclass ``cls`` and the rest (kept as extras)."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return ({k: v for k, v in raw.items() if k in names},
            {k: v for k, v in raw.items() if k not in names})


@dataclasses.dataclass
class AttackRecord:
    """One ``[[attacks]]`` entry as it ran: plugin, library, threat model and budgets."""

    component: str
    library: str | None
    threat_model: str
    epsilons: list[float]
    source: list[str] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class CellRecord:
    """One trained model: its identity, cache key, status and training facts.

    ``cell`` holds the identity columns of :data:`robench.schema.CELL_SCHEMA`;
    ``key_material`` what its key hashes (:data:`robench.runner.KEY_MATERIAL`; None in
    records written before it was stored); ``cached`` says whether the weights came from
    the model cache; ``error`` and ``traceback`` are set when the cell failed.
    """

    cell: dict[str, Any]
    key: str
    status: str = "pending"
    cached: bool | None = None
    train_seconds: float | None = None
    history: bool | None = None
    metrics_key: str | None = None
    key_material: dict[str, Any] | None = dataclasses.field(default=None,
                                                            metadata=SINCE_VERSION_1)
    error: str | None = None
    traceback: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        """The cell's id (unique within the run)."""
        return str(self.cell.get("cell", ""))


@dataclasses.dataclass
class UnitRecord:
    """One attack sweep on one cell: status, timing, row count and the attack's details.

    ``key_material`` is what its key hashes (see :class:`CellRecord`);
    ``over_budget`` counts rows the host rejected; ``details`` holds the scalar details
    the attack reported (e.g. ``minimal``, ``incremental``, ``implementation``).
    """

    cell: str
    attack: str
    key: str
    status: str = "pending"
    seconds: float | None = None
    rows: int | None = None
    over_budget: int | None = None
    library: str | None = None
    library_version: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    key_material: dict[str, Any] | None = dataclasses.field(default=None,
                                                            metadata=SINCE_VERSION_1)
    error: str | None = None
    traceback: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ExperimentRecord:
    """The experiment as it was run: its name, file, parsed configuration and hash."""

    name: str
    file: str
    config: dict[str, Any]
    config_hash: str


@dataclasses.dataclass
class RunRecord:
    """The whole of ``run.json`` (see the module docstring for the layout).

    ``kept`` names the cells and units whose results a rerun kept although their key
    changed in versions only (``[experiment] on_version_change = "keep"``), each with
    the versions that produced them: ``"foolbox 3.3.3 (now 3.3.4)"``.
    """

    experiment: ExperimentRecord
    robench_version: str
    schema_version: int = SCHEMA_VERSION
    status: str = "pending"
    data: dict[str, Any] | None = None
    versions: dict[str, Any] = dataclasses.field(default_factory=dict)
    git_commit: str | None = None
    device: str | None = None
    seeds: list[int] = dataclasses.field(default_factory=list)
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    attacks: dict[str, AttackRecord] = dataclasses.field(default_factory=dict)
    cells: dict[str, CellRecord] = dataclasses.field(default_factory=dict)
    units: dict[str, UnitRecord] = dataclasses.field(default_factory=dict)
    metric_errors: dict[str, str] = dataclasses.field(default_factory=dict)
    kept: dict[str, list[str]] = dataclasses.field(default_factory=dict,
                                                   metadata=SINCE_VERSION_1)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, where: str = "run.json") -> RunRecord:
        """Parse a ``run.json`` object; ``where`` names the file in errors.

        Keys this version does not know are kept in ``extra`` (and written back), so a
        record survives a round trip through an older reader.
        """
        if not isinstance(raw, dict):
            raise RobenchError(f"{where}: not a robench run record (expected a JSON object)")
        version = raw.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise RobenchError(f"{where}: run record schema version {version!r} is newer than "
                               f"this robench reads ({SCHEMA_VERSION}); upgrade robench")
        try:
            fields, extra = _known(cls, raw)
            fields["experiment"] = ExperimentRecord(**fields["experiment"])
            fields["attacks"] = {k: AttackRecord(**_split(AttackRecord, v))
                                 for k, v in (fields.get("attacks") or {}).items()}
            fields["cells"] = {k: CellRecord(**_split(CellRecord, v))
                               for k, v in (fields.get("cells") or {}).items()}
            fields["units"] = {k: UnitRecord(**_split(UnitRecord, v))
                               for k, v in (fields.get("units") or {}).items()}
            fields["metric_errors"] = fields.get("metric_errors") or {}
            fields["kept"] = fields.get("kept") or {}
            fields["schema_version"] = SCHEMA_VERSION
            return cls(**fields, extra=extra)
        except (KeyError, TypeError) as err:
            raise RobenchError(f"{where}: damaged run record ({type(err).__name__}: {err})"
                               ) from None

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """Read and parse ``path`` (a run.json); damaged JSON is a RobenchError naming it."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RobenchError(f"{path}: not a robench run directory (no run.json)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RobenchError(f"{path}: damaged run record ({err})") from None
        return cls.from_dict(raw, where=str(path))

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``run.json`` (extras merged back in)."""
        out = _flatten(self)
        out["schema_version"] = SCHEMA_VERSION
        return out

    # ------------------------------------------------------------------ queries
    def failures(self) -> dict[str, str]:
        """Every failure of the run by id: failed cells and units, metrics that raised
        (``metric:<name>``) and reporters that raised (``reporter:<name>``), with their
        error messages."""
        out = {cid: rec.error or "" for cid, rec in self.cells.items() if rec.status == "failed"}
        out.update({uid: rec.error or "" for uid, rec in self.units.items()
                    if rec.status == "failed"})
        out.update({f"metric:{name}": (trace.strip().splitlines() or [""])[-1]
                    for name, trace in self.metric_errors.items()})
        out.update({f"reporter:{name}": (trace.strip().splitlines() or [""])[-1]
                    for name, trace in self.extra.get("reporter_errors", {}).items()})
        return out

    def kept_summary(self) -> str:
        """The results kept across a version change (:attr:`kept`) in one line, e.g.
        ``3 units computed with foolbox 3.3.3 (now 3.3.4)``; empty when none."""
        groups: dict[tuple[str, str], int] = {}
        for id_, versions in self.kept.items():
            group = ("unit" if id_ in self.units else "model", "; ".join(versions))
            groups[group] = groups.get(group, 0) + 1
        return "; ".join(f"{n} {kind}{'s' if n > 1 else ''} "
                         f"{'computed' if kind == 'unit' else 'trained'} with {versions}"
                         for (kind, versions), n in groups.items())

    def done_units(self) -> list[str]:
        """Ids of the units whose results are stored."""
        return [uid for uid, rec in self.units.items() if rec.status == "done"]


def _split(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    fields, extra = _known(cls, raw)
    return {**fields, "extra": extra}


def _flatten(obj: Any) -> Any:
    """A record dataclass as plain JSON data, with each ``extra`` merged into its object
    (fields added after layout version 1 only when set)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: _flatten(getattr(obj, f.name)) for f in dataclasses.fields(obj)
               if f.name != "extra" and (getattr(obj, f.name) or not f.metadata)}
        out.update(getattr(obj, "extra", {}) or {})
        return out
    if isinstance(obj, dict):
        return {k: _flatten(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v) for v in obj]
    return obj
