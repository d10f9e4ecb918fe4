"""Expands an experiment into cells and units, and runs them resumably.

A *cell* is (dataset, model, defense stack, seed): one trained model. A *unit* is
(cell, attack): one attack's whole epsilon sweep on that model, the smallest piece of
work whose results are stored. The runner hands each pending cell to the experiment's
executor as picklable work (:mod:`robench.work`); the work writes each finished unit
atomically to its own parquet part, which carries the unit's key and record, and
returns the record entries, which this process alone writes to run.json. A rerun skips
every unit whose part is intact and holds its key, including a part written just before
an interruption and not yet recorded; damaged parts, run.json and cached models are set
aside into ``damaged/`` with a message naming the file, and recomputed.

Cache keys hash everything that determines a result (see :func:`plan`); seeds derive
from the identity of a cell (labels and seed) and of an attack (label and seed), never
from the keys or the order of work, so a resumed run gives the same numbers as an
uninterrupted one and every defense of one seed faces the same attack randomness.
Models are cached under ``models/`` (or the experiment's ``model_cache``, shared
between runs) with their training history beside them. One failing cell, unit or
metric is recorded with its traceback, the others still run, and the run's status is
``failed``. A rerun with nothing to do imports no torch and recomputes no metric.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from . import __version__
from .components import Attack
from .config import AttackSpec, ComponentSpec, ExperimentSpec, stable_hash
from .errors import RobenchError
from .plugins import DEFAULT_PLUGINS, Registry, get_registry
from .record import AttackRecord, CellRecord, ExperimentRecord, RunRecord, UnitRecord
from .results import RunStore, atomic_write_bytes, atomic_write_parquet, part_info
from .work import (
    Cell,
    CellOutcome,
    CellWork,
    Unit,
    Worker,
    component_raw,
    metrics_key,
    run_cell,
    set_aside,
)

LIBRARIES = ("torch", "torchvision", "adversarial-robustness-toolbox", "foolbox",
             "torchattacks", "numpy", "pandas", "scikit-learn", "pluggy")


ATTACK_DISTRIBUTIONS = {"art": "adversarial-robustness-toolbox"}
"""Distribution names of attack libraries whose ``Attack.library`` differs from them."""


KeepKey = Callable[[str, str, dict[str, Any], str], tuple[str, dict[str, Any]]]
"""``keep(kind, id, material, key) -> (key, material)``: chooses the key of a cell or
unit (and the material it was made of)."""


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _file_digest(path: str, base: Path) -> str | None:
    """SHA-256 of the file ``path`` (absolute, or relative to the working directory or to
    ``base``); None when there is no such file."""
    for candidate in (Path(path).expanduser(), base / path):
        if candidate.is_file():
            with open(candidate, "rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest()
    return None


class _Keys:
    """The identity of components in cache keys: name, options, version of the component
    and of its plugin package, and the content of any ``checkpoint`` file it reads."""

    def __init__(self, spec: ExperimentSpec, registry: Registry):
        self.registry = registry
        self.base = Path(spec.file).parent

    def component(self, spec: ComponentSpec) -> dict[str, Any]:
        entry = self.registry.entry(spec.kind, spec.name)
        out = {**component_raw(spec), "version": entry.cls.version,
               "package": [entry.package, entry.version]}
        checkpoint = getattr(spec.options, "checkpoint", None)
        if isinstance(checkpoint, str) and checkpoint:
            out["checkpoint_content"] = _file_digest(checkpoint, self.base)
        if spec.kind == "attack":
            library = getattr(entry.cls, "library", None) or ""
            out["library"] = [library, _version(ATTACK_DISTRIBUTIONS.get(library, library))
                              if library else None]
        return out


KEY_MATERIAL = (
    ("cell", "data", "the data: the entries `dataset`, `root` and `train_subset`"),
    ("cell", "model", "the model component"),
    ("cell", "training", "the model entry's training settings"),
    ("cell", "defenses", "the defense stack: its components, in order"),
    ("cell", "seed", "the cell's seed"),
    ("cell", "torch", "torch's version"),
    ("data", "dataset", "the dataset component"),
    ("data", "root", "`[data] root`"),
    ("data", "train_subset", "`[data] train_subset`"),
    ("unit", "cell", "the key of the unit's cell"),
    ("unit", "attack", "the attack component"),
    ("unit", "epsilons", "the budgets"),
    ("unit", "samples", "`samples` of the attack entry"),
    ("unit", "test_subset", "`[data] test_subset`"),
    ("unit", "targets", "`targets` of the attack entry"),
    ("unit", "source", "the key of the cell a transfer attack is crafted on (null for "
                       "none)"),
    ("component", "name", "the plugin's name"),
    ("component", "options", "its parsed options"),
    ("component", "version", "the plugin class's `version`"),
    ("component", "package", "`[package, version]` of the plugin's distribution"),
    ("component", "checkpoint_content", "SHA-256 of the file its `checkpoint` option "
                                        "names (only with such an option; null when "
                                        "there is no such file)"),
    ("component", "library", "`[library, version]` of the library an attack wraps "
                             "(attacks only; `[\"\", null]` for an attack without one)"),
)
"""What a key is made of: (part, entry, meaning). A cell's key hashes the ``cell``
entries, a unit's the ``unit`` entries; ``data`` is the cell's ``data`` entry and every
component (dataset, model, defense, attack) is a ``component`` object. Each cell's and
unit's material is stored in run.json (``key_material``), so a rerun can say what
changed."""


def describe_key_material() -> str:
    """:data:`KEY_MATERIAL` as a Markdown table, for the run-directory documentation."""
    lines = ["| part | entry | meaning |", "| --- | --- | --- |"]
    lines += [f"| {part} | `{entry}` | {meaning} |" for part, entry, meaning in KEY_MATERIAL]
    return "\n".join(lines)


VERSION_ENTRIES = ("version", "package", "library")
"""Entries of a component's key material that are versions (with ``torch`` of a cell)."""


def key_changes(old: Any, new: Any, path: tuple = ()) -> list[tuple[tuple, Any, Any]]:
    """``(path, old value, new value)`` of every entry in which two key materials differ;
    objects are compared entry by entry, and so are lists of objects (a defense stack)."""
    if isinstance(old, dict) and isinstance(new, dict):
        names = [*old, *(k for k in new if k not in old)]
        return [c for k in names for c in key_changes(old.get(k), new.get(k), (*path, k))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) \
            and all(isinstance(v, dict) for v in old + new):
        return [c for i, (a, b) in enumerate(zip(old, new))
                for c in key_changes(a, b, (*path, i))]
    return [] if old == new else [(path, old, new)]


def _component(material: dict[str, Any], path: tuple) -> str:
    """The component at ``path`` of a key material in words, e.g. ``model 'mlp'``."""
    node: Any = material
    for step in path:
        node = node[step] if isinstance(node, (dict, list)) else None
    kind = "defense" if path[0] == "defenses" else str(path[-1])
    name = node.get("name") if isinstance(node, dict) else None
    return f"{kind} {name!r}" if name else kind


def version_change(material: dict[str, Any], path: tuple, old: Any, new: Any
                   ) -> tuple[str, Any, Any] | None:
    """``(what, old version, new version)`` when the change of ``material`` at ``path``
    is a version's (of torch, a plugin, its package or an attack's library); None for
    any other change."""
    entry = path[-1]
    if path == ("torch",):
        return "torch", old, new
    if entry == "version" and len(path) > 1:
        return f"{_component(material, path[:-1])} version", old, new
    if entry in VERSION_ENTRIES and isinstance(old, list) and isinstance(new, list) \
            and len(old) == len(new) == 2 and old[0] == new[0]:
        return str(old[0]), old[1], new[1]
    return None


def describe_change(material: dict[str, Any], path: tuple, old: Any, new: Any) -> str:
    """One change of a key's material in words, e.g. ``foolbox 3.3.3 -> 3.3.4`` or
    ``the checkpoint of model 'cnn' changed``."""
    version = version_change(material, path, old, new)
    if version is not None:
        return f"{version[0]} {version[1]} -> {version[2]}"
    if path[-1] == "checkpoint_content":
        return f"the checkpoint of {_component(material, path[:-1])} changed"
    shown = [json.dumps(v, default=str) for v in (old, new)]
    shown = [v if len(v) <= 40 else v[:37] + "..." for v in shown]
    return f"{'.'.join(map(str, path))} {shown[0]} -> {shown[1]}"


def _as_json(obj: Any) -> Any:
    """``obj`` as run.json stores it (tuples become lists, unknown objects strings)."""
    return json.loads(json.dumps(obj, default=str))


def plan(spec: ExperimentSpec, registry: Registry | None = None
         ) -> tuple[list[Cell], list[Unit]]:
    """The cells and units of an experiment, in execution order (see
    :func:`plan_with_material`)."""
    cells, units, _ = plan_with_material(spec, registry)
    return cells, units


def plan_with_material(spec: ExperimentSpec, registry: Registry | None = None, *,
                       keep: KeepKey | None = None
                       ) -> tuple[list[Cell], list[Unit], dict[str, dict[str, Any]]]:
    """The cells and units of an experiment, in execution order, and the key material of
    each by id.

    A cell's key hashes the data (dataset plugin, options, version, root and subset),
    the model and defense components (options, versions, checkpoint contents), the
    training settings, the seed and torch's version; a unit's key hashes its cell's
    key, the attack component (options, versions, its library's version), the budgets,
    samples, targets and the source cell's key (:data:`KEY_MATERIAL`). ``keep(kind, id,
    material, key)``, when given, returns the key (and material) to use for a cell or
    unit, e.g. an earlier one whose results are kept; units are keyed by their cells'
    keys so chosen.
    Raises RobenchError if two cells or units would share an id.
    """
    keys = _Keys(spec, registry or get_registry())
    data = spec.data
    data_key = {"dataset": keys.component(data.dataset), "root": data.root,
                "train_subset": data.train_subset}
    torch_version = _version("torch")
    cells, units, materials = [], [], {}
    for model in spec.models:
        stacks = [s for s in spec.defenses
                  if model.defenses is None or s.label in model.defenses]
        for stack in stacks:
            for seed in spec.seeds:
                material = _as_json({
                    "data": data_key, "model": keys.component(model.component),
                    "training": dataclasses.asdict(model.training),
                    "defenses": [keys.component(d) for d in stack.defenses], "seed": seed,
                    "torch": torch_version,
                })
                cell = Cell(model, stack, seed, data.dataset.name, stable_hash(material))
                if keep is not None:
                    key, material = keep("cell", cell.id, material, cell.key)
                    cell = dataclasses.replace(cell, key=key)
                cells.append(cell)
                materials[cell.id] = material
    by_labels = {(c.model.label, c.defense.label, c.seed): c for c in cells}
    attacks = {a.label: keys.component(a.component) for a in spec.attacks}
    for cell in cells:
        for attack in spec.attacks:
            source_key = (by_labels[(*attack.source, cell.seed)].key if attack.source else None)
            material = _as_json({
                "cell": cell.key, "attack": attacks[attack.label],
                "epsilons": attack.epsilons, "samples": attack.samples,
                "test_subset": data.test_subset, "targets": attack.targets,
                "source": source_key,
            })
            unit = Unit(cell, attack, stable_hash(material))
            if keep is not None:
                key, material = keep("unit", unit.id, material, unit.key)
                unit = dataclasses.replace(unit, key=key)
            units.append(unit)
            materials[unit.id] = material
    for kind, ids in (("cell", [c.id for c in cells]), ("unit", [u.id for u in units])):
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        if twice:
            raise RobenchError(f"{spec.file}: two {kind}s would share the id "
                               f"{twice[0]!r}; rename a label")
    return cells, units, materials


def resolve_device(device: str) -> str:
    """The name of the device to run on: ``auto`` -> ``cuda`` when available, else
    ``cpu``; otherwise the named device (``cpu`` without importing torch, so that a parent
    whose cells run in worker processes does not pay for it)."""
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RobenchError(f"device {device!r} requested but CUDA is not available; "
                           f"use --device cpu or auto")
    return str(dev)


def _versions(registry: Registry) -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "robench": __version__}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    out["plugins"] = {e.package: e.version for e in registry.entries()}
    return out


def _git_commit(path: Path) -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def thread_count(spec: ExperimentSpec, executor) -> int:
    """torch's intra-op threads per worker: ``[experiment] threads``, else the
    executor's own ``threads`` per worker when it declares them, else the cores divided
    by the executor's ``workers`` (1 for the local executor), at least 1."""
    if spec.threads:
        return spec.threads
    if getattr(executor, "threads", None):
        return int(executor.threads)
    return max(1, _cores() // max(1, int(getattr(executor, "workers", 1) or 1)))


def _plugin_modules(registry: Registry) -> tuple[str, ...]:
    """Plugin modules registered directly (not built in, not through an entry point),
    which a worker process's registry must import itself."""
    return tuple(name for name, plugin in registry.pm.list_name_plugin()
                 if isinstance(plugin, ModuleType) and name == plugin.__name__
                 and name not in DEFAULT_PLUGINS)


class Runner:
    """Runs one experiment into one run directory (see the module docstring)."""

    def __init__(self, spec: ExperimentSpec, out: str | Path | None = None, *,
                 device: str | None = None, progress: bool = True,
                 registry: Registry | None = None):
        self.spec = spec
        self.registry = registry or get_registry()
        self.store = RunStore(out or spec.output)
        self.device_name = device or spec.device
        self.progress = progress
        self.cells, self.units, self.materials = plan_with_material(spec, self.registry)
        self.kept: dict[str, list[str]] = {}
        self.model_dir = (Path(spec.model_cache).expanduser() if spec.model_cache
                          else self.store.path / "models")
        self.messages: list[str] = []

    def model_path(self, cell: Cell) -> Path:
        """Where the trained weights of ``cell`` are cached."""
        return self.model_dir / f"{cell.key}.pt"

    def worker(self, device) -> Worker:
        """An in-process :class:`robench.work.Worker` for this run's cells on ``device``."""
        return Worker(self.spec, self.registry, str(device), self.store.path, self.model_dir)

    # ------------------------------------------------------------------ record
    def _say(self, message: str) -> None:
        self.messages.append(message)
        print(f"robench: {message}", file=sys.stderr)

    def _previous(self) -> RunRecord | None:
        """The stored record; a damaged run.json is set aside (and its units recovered
        from their parts)."""
        if not self.store.exists():
            return None
        try:
            return self.store.record()
        except RobenchError as err:
            target = set_aside(self.store.run_json_path, self.store.path / "damaged")
            self._say(f"{err}; moved to {target}, recovering the finished units from "
                      f"their results parts")
            return None

    def _init_record(self, previous: RunRecord | None) -> RunRecord:
        old_units = previous.units if previous else {}
        old_cells = previous.cells if previous else {}
        live = {self.store.part_path(u.id): u for u in self.units}
        for path in sorted(self.store.results_dir.glob("*.parquet")):
            if path not in live:  # a unit this configuration no longer has
                self._supersede(path, (old_units.get(path.stem) or UnitRecord(
                    "", "", "unknown")).key)
        units = {}
        for unit in self.units:
            units[unit.id] = self._unit_record(unit, old_units.get(unit.id))
            units[unit.id].key_material = self.materials[unit.id]
        cells = {}
        for c in self.cells:
            old = old_cells.get(c.id)
            keep = dataclasses.asdict(old) if old is not None and old.key == c.key else {}
            keep.update(cell=c.identity(), key=c.key, key_material=self.materials[c.id])
            cells[c.id] = CellRecord(**keep)
        done = {i for i, r in cells.items() if r.status == "done"}
        done |= {i for i, r in units.items() if r.status == "done"}
        kept = {i: v for i, v in self.kept.items() if i in done}
        return RunRecord(
            experiment=ExperimentRecord(name=self.spec.name, file=self.spec.file,
                                        config=self.spec.raw,
                                        config_hash=self.spec.config_hash),
            robench_version=__version__, status="running",
            data=previous.data if previous else None,
            versions=_versions(self.registry), git_commit=_git_commit(Path.cwd()),
            device=previous.device if previous else None, seeds=list(self.spec.seeds),
            started=_now(),
            attacks={a.label: self._attack_record(a) for a in self.spec.attacks},
            cells=cells, units=units,
            metric_errors=dict(previous.metric_errors) if previous else {}, kept=kept,
            extra=self._extra(previous))

    def _extra(self, previous: RunRecord | None) -> dict[str, Any]:
        """run.json's further keys: the previous run's, with this run's ``overrides``
        (the ``-o KEY=VALUE`` values applied over the file's, absent when none)."""
        extra = {k: v for k, v in (previous.extra if previous else {}).items()
                 if k != "overrides"}
        if self.spec.overrides:
            extra["overrides"] = dict(self.spec.overrides)
        return extra

    def _unit_record(self, unit: Unit, old: UnitRecord | None) -> UnitRecord:
        """``unit``'s record: done when its part is intact and holds its key (a part
        written just before an interruption is adopted from its own metadata); a part of
        another key is superseded, a damaged one set aside."""
        path = self.store.part_path(unit.id)
        pending = UnitRecord(cell=unit.cell.id, attack=unit.attack.label, key=unit.key)
        if not path.is_file():
            return pending
        try:
            info = part_info(path)
        except (OSError, ValueError) as err:
            target = set_aside(path, self.store.path / "damaged")
            self._say(f"{path}: damaged results part ({err}); moved to {target}, "
                      f"recomputing it")
            return pending
        if info.get("key") != unit.key:
            self._supersede(path, info.get("key") or (old.key if old else "unknown"))
            return pending
        if old is not None and old.key == unit.key and old.status == "done":
            return old
        stored = dict(info.get("record") or {})
        fields = {f.name for f in dataclasses.fields(UnitRecord)} - {"extra"}
        return UnitRecord(**{k: v for k, v in stored.items() if k in fields},
                          extra={k: v for k, v in stored.items() if k not in fields})

    def _keep_earlier_versions(self, previous: RunRecord) -> None:
        """``on_version_change = "keep"``: plan again, keeping the earlier key of every
        finished cell (whose model is still cached) and unit whose key changed in
        versions only; :attr:`kept` then says what each was computed with. A unit is
        kept with what its cell (and source cell) were."""
        own: dict[str, list[str]] = {}

        def keep(kind: str, id_: str, material: dict[str, Any], key: str
                 ) -> tuple[str, dict[str, Any]]:
            old = (previous.cells if kind == "cell" else previous.units).get(id_)
            if old is None or old.key == key or old.key_material is None \
                    or old.status != "done":
                return key, material
            versions = [version_change(old.key_material, *change)
                        for change in key_changes(old.key_material, material)]
            if None in versions or (kind == "cell"
                                    and not (self.model_dir / f"{old.key}.pt").is_file()):
                return key, material
            own[id_] = [f"{what} {was} (now {now})"
                        for what, was, now in cast(list[tuple[str, Any, Any]], versions)]
            return old.key, old.key_material

        self.cells, self.units, self.materials = plan_with_material(
            self.spec, self.registry, keep=keep)
        by_labels = {(c.model.label, c.defense.label, c.seed): c for c in self.cells}
        self.kept = {c.id: own[c.id] for c in self.cells if c.id in own}
        for unit in self.units:
            cells = [unit.cell] + ([by_labels[(*unit.attack.source, unit.cell.seed)]]
                                   if unit.attack.source else [])
            changes = [*own.get(unit.id, []), *(v for c in cells for v in own.get(c.id, []))]
            if changes:
                self.kept[unit.id] = list(dict.fromkeys(changes))

    def _explain(self, previous: RunRecord | None) -> None:
        """Say in one line per reason why finished cells and units are recomputed: what
        changed in their keys' material (e.g. ``foolbox 3.3.3 -> 3.3.4``)."""
        if previous is None:
            return
        reasons: dict[str, str] = {}
        for kind, olds, news in (("cell", previous.cells, self.record.cells),
                                 ("unit", previous.units, self.record.units)):
            for id_, new in news.items():
                old = olds.get(id_)
                if old is None or old.status != "done" or old.key == new.key:
                    continue
                if old.key_material is None or new.key_material is None:
                    reasons[id_] = "the earlier run recorded no key material"
                    continue
                parts = []
                for path, was, now in key_changes(old.key_material, new.key_material):
                    if path in (("cell",), ("source",)):
                        cell = getattr(new, "cell", "") if path == ("cell",) else ""
                        parts.append(reasons.get(cell) or f"its {path[0]} cell's key changed")
                    else:
                        parts.append(describe_change(new.key_material, path, was, now))
                reasons[id_] = "; ".join(dict.fromkeys(parts))
        for kind, ids in (("cell", self.record.cells), ("unit", self.record.units)):
            counts = Counter(reasons[i] for i in ids if i in reasons)
            for reason, n in counts.items():
                self._say(f"recomputing {n} {kind}{'s' if n > 1 else ''}: {reason}")
        counts = Counter("; ".join(v) for i, v in self.record.kept.items()
                         if i in self.record.units)
        for versions, n in counts.items():
            self._say(f"keeping {n} unit{'s' if n > 1 else ''} computed with {versions}")

    def _attack_record(self, spec: AttackSpec) -> AttackRecord:
        cls = cast(type[Attack], self.registry.get("attack", spec.component.name))
        attack = spec.component.create(self.registry)  # the instance knows its threat model
        return AttackRecord(component=spec.component.name, library=cls.library,
                            threat_model=attack.threat_model.value,
                            epsilons=list(spec.epsilons),
                            source=list(spec.source) if spec.source else None)

    def _supersede(self, path: Path, old_key: str) -> None:
        """Move a part computed under an older configuration aside (never delete data)."""
        target = self.store.path / "superseded" / f"{path.stem}.{old_key}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)

    def _save(self) -> None:
        self.store.write_record(self.record)

    # ------------------------------------------------------------------ metrics
    def _metrics_fingerprint(self) -> str:
        """Hash of what the run-level metrics are computed from."""
        return stable_hash({
            "units": {u: r.key for u, r in self.record.units.items() if r.status == "done"},
            "cells": {c: r.metrics_key for c, r in self.record.cells.items()},
            "metrics": [component_raw(m) for m in self.spec.metrics],
            "versions": self.record.versions})

    def compute_metrics(self):
        """Metrics over the stored results plus the per-cell metric rows (the stages of
        :mod:`robench.metric_pipeline`)."""
        from .metric_pipeline import compute

        errors = {k: v for k, v in self.record.metric_errors.items() if "@" in k}
        metrics, failed = compute([m.create(self.registry) for m in self.spec.metrics],
                                  self.store.results, self.store.cell_metrics())
        atomic_write_parquet(self.store.metrics_path, metrics)
        self.record.metric_errors = {**errors, **failed}
        return metrics

    # ------------------------------------------------------------------ main
    def run(self) -> RunStore:
        """Run every pending unit, compute metrics, write the report; return the store."""
        self.store.path.mkdir(parents=True, exist_ok=True)
        previous = self._previous()
        if previous is not None and self.spec.on_version_change == "keep":
            self._keep_earlier_versions(previous)
        self.record = self._init_record(previous)
        self._explain(previous)
        if Path(self.spec.file).is_file():
            text = Path(self.spec.file).read_bytes()
            copy = self.store.path / "experiment.toml"
            if not copy.is_file() or copy.read_bytes() != text:
                atomic_write_bytes(copy, text)
        began = time.perf_counter()
        pending_units = {u.id for u in self.units if self.record.units[u.id].status != "done"}
        units_by_cell: dict[str, list[Unit]] = {}
        for unit in self.units:
            units_by_cell.setdefault(unit.cell.id, []).append(unit)
        pending = [c for c in self.cells
                   if any(u.id in pending_units for u in units_by_cell[c.id])
                   or self.record.cells[c.id].metrics_key != metrics_key(c, self.spec)]
        self._save()
        if pending:
            self._run_cells(pending, units_by_cell, pending_units)
        if self.record.extra.get("metrics_fingerprint") != self._metrics_fingerprint() \
                or not self.store.metrics_path.is_file():
            self.compute_metrics()
            self.record.extra["metrics_fingerprint"] = self._metrics_fingerprint()
        failed = self.record.failures()
        self.record.status = "failed" if failed else "done"
        self.record.finished = _now()
        self.record.duration_s = round(time.perf_counter() - began, 3)
        self._save()
        return self.store

    def _run_cells(self, pending: list[Cell], units_by_cell: dict[str, list[Unit]],
                   pending_units: set[str]) -> None:
        """Hand the pending cells to the executor and record each outcome as it comes."""
        from tqdm.auto import tqdm

        device = resolve_device(self.device_name)
        executor = self.spec.executor.create(self.registry)
        threads = thread_count(self.spec, executor)
        self.record.device = str(device)
        self.record.extra["threads"] = threads
        local = self.worker(device)
        by_labels = {(c.model.label, c.defense.label, c.seed): c for c in self.cells}
        plugins = _plugin_modules(self.registry)
        works = []
        for cell in pending:
            units = tuple(u for u in units_by_cell[cell.id] if u.id in pending_units)
            sources = tuple({(src := by_labels[(*u.attack.source, cell.seed)]).id: src
                             for u in units if u.attack.source}.values())
            works.append(CellWork(
                spec=self.spec, cell=cell, units=units, sources=sources,
                run_dir=str(self.store.path), model_dir=str(self.model_dir),
                device=str(device), threads=threads,
                cell_metrics=self.record.cells[cell.id].metrics_key
                != metrics_key(cell, self.spec),
                plugins=plugins, progress=self.progress, worker=local))
        bar = tqdm(total=sum(len(w.units) for w in works), desc=self.spec.name,
                   unit="attack", disable=not self.progress)
        try:
            for work, outcome in executor.map(run_cell, works):
                self._record_outcome(work, outcome)
                self._save()
                bar.update(len(work.units))
        except KeyboardInterrupt:
            self.record.status = "interrupted"
            self._save()
            raise
        finally:
            bar.close()

    def _record_outcome(self, work: CellWork, outcome: CellOutcome) -> None:
        for message in outcome.messages:
            self._say(message)
        if outcome.data is not None:
            self.record.data = outcome.data
        old = self.record.cells[work.cell.id]
        if outcome.cell.metrics_key is None and outcome.cell.status == "done":
            outcome.cell.metrics_key = old.metrics_key
        outcome.cell.key_material = self.materials[work.cell.id]
        self.record.cells[work.cell.id] = outcome.cell
        errors = {k: v for k, v in self.record.metric_errors.items()
                  if not k.endswith(f"@{work.cell.id}") or not work.cell_metrics}
        self.record.metric_errors = {**errors, **outcome.metric_errors}
        for unit_id, unit in outcome.units.items():
            unit.key_material = self.materials[unit_id]
        self.record.units.update(outcome.units)
