"""A cell's work as a picklable object, and the function that does it anywhere.

The runner (the parent process) hands each pending cell to its executor as a
:class:`CellWork` and the top-level function :func:`run_cell`; any executor, in this
process or in another one or on another machine, calls ``run_cell(work)``. It loads the
data, trains the cell's model or loads it from the model cache, computes the per-cell
metrics, runs the pending attack units, writes their results parts and artifacts
atomically into the run directory, and *returns* the record entries as a
:class:`CellOutcome`. Only the parent writes ``run.json``.

A worker process builds its own plugin registry (the installed plugins plus the plugin
modules named in ``CellWork.plugins``) and keeps one :class:`Worker` (data and models
loaded once) for all the cells it is given. The run directory and the model cache must
be paths every worker can reach.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import io
import time
import traceback
from pathlib import Path
from typing import Any

from .config import AttackSpec, ComponentSpec, DefenseStack, ExperimentSpec, ModelSpec, stable_hash
from .plugins import Registry
from .record import CellRecord, UnitRecord
from .results import RunStore, atomic_write_bytes, atomic_write_parquet, write_part


def identity_seed(**identity: Any) -> int:
    """A 32-bit seed derived from an identity (labels and the experiment seed) alone."""
    return int(stable_hash(identity)[:8], 16)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One trained model: a model entry, a defense stack and a seed.

    ``key`` hashes everything that determines the trained weights (and keys the model
    cache); the training seed derives from the identity alone (dataset, labels, seed), so
    it does not move when a version or a checkpoint enters the key.
    """

    model: ModelSpec
    defense: DefenseStack
    seed: int
    dataset: str
    key: str

    @property
    def id(self) -> str:
        """``MODEL--DEFENSE--sSEED`` (labels cannot contain ``--``)."""
        return f"{self.model.label}--{self.defense.label}--s{self.seed}"

    @property
    def torch_seed(self) -> int:
        """The training seed: a hash of the cell's identity (dataset, labels, seed)."""
        return identity_seed(**self.identity())

    def identity(self) -> dict[str, Any]:
        """The cell's identity columns (:data:`robench.schema.CELL_SCHEMA`)."""
        return {"dataset": self.dataset, "model": self.model.label,
                "defense": self.defense.label, "seed": self.seed, "cell": self.id}


@dataclasses.dataclass(frozen=True)
class Unit:
    """One attack's sweep on one cell; ``key`` hashes everything that determines its rows."""

    cell: Cell
    attack: AttackSpec
    key: str

    @property
    def id(self) -> str:
        """``CELL--ATTACK``."""
        return f"{self.cell.id}--{self.attack.label}"

    @property
    def attack_seed(self) -> int:
        """The attack's seed: a hash of (attack label, seed), the same for every model and
        defense of one seed, so they all face the same randomness."""
        return identity_seed(attack=self.attack.label, seed=self.cell.seed)


@dataclasses.dataclass(frozen=True)
class CellWork:
    """Everything needed to run one cell's pending work, picklable.

    ``units`` are the cell's pending units; ``sources`` the cells whose models its
    transfer attacks are crafted on; ``cell_metrics`` whether the per-cell metrics must
    be (re)computed. ``threads`` is torch's intra-op thread count for this work (None
    leaves it as it is). ``plugins`` names the plugin modules a fresh registry needs
    beyond the installed ones. ``worker`` is the parent's own :class:`Worker` when the
    work runs in-process; it is never pickled.
    """

    spec: ExperimentSpec
    cell: Cell
    units: tuple[Unit, ...]
    sources: tuple[Cell, ...]
    run_dir: str
    model_dir: str
    device: str
    threads: int | None
    cell_metrics: bool
    plugins: tuple[str, ...] = ()
    progress: bool = False
    worker: Worker | None = dataclasses.field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "worker": None}

    @property
    def timeout(self) -> float | None:
        """Seconds this work may take in a worker process: ``[experiment] unit_timeout``
        per pending unit (None: no limit)."""
        limit = self.spec.unit_timeout
        return None if limit is None else limit * max(1, len(self.units))

    def failed(self, error: str) -> CellOutcome:
        """The outcome of this work when it could not finish (its worker was lost or
        stopped): the cell and every pending unit failed with ``error``."""
        cell = CellRecord(cell=self.cell.identity(), key=self.cell.key, status="failed",
                          error=error)
        units = {u.id: UnitRecord(cell=self.cell.id, attack=u.attack.label, key=u.key,
                                  status="failed", error=error) for u in self.units}
        return CellOutcome(cell=cell, units=units)


@dataclasses.dataclass
class CellOutcome:
    """What :func:`run_cell` returns: the cell's and each attempted unit's record entry,
    the data description (for run.json), metric failures and messages for the user
    (e.g. a damaged cached model that was set aside)."""

    cell: CellRecord
    units: dict[str, UnitRecord]
    data: dict[str, Any] | None = None
    metric_errors: dict[str, str] = dataclasses.field(default_factory=dict)
    messages: list[str] = dataclasses.field(default_factory=list)


def run_cell(work: CellWork) -> CellOutcome:
    """Do one cell's work (see the module docstring); never raises for a failing cell or
    unit: failures are in the returned records."""
    if work.threads:
        import torch

        torch.set_num_threads(work.threads)
    worker = work.worker or _process_worker(work)
    return worker.run_cell(work)


_PROCESS_WORKER: dict[tuple, Worker] = {}


def _process_worker(work: CellWork) -> Worker:
    """This process's :class:`Worker` for ``work``'s experiment (built on first use)."""
    key = (work.spec.config_hash, work.run_dir, work.model_dir, work.device, work.plugins)
    if key not in _PROCESS_WORKER:
        from .plugins import build_registry

        _PROCESS_WORKER.clear()
        registry = build_registry(plugins=[importlib.import_module(m) for m in work.plugins])
        _PROCESS_WORKER[key] = Worker(work.spec, registry, work.device, work.run_dir,
                                      work.model_dir)
    return _PROCESS_WORKER[key]


CONTAINED = (Exception, SystemExit)
"""What a failing cell, unit or metric may raise and still be recorded as its own
failure (``sys.exit`` in a plugin included); KeyboardInterrupt ends the run."""


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class Worker:
    """Runs cells of one experiment in one process: the data is loaded once and the last
    two trained models are kept in memory."""

    def __init__(self, spec: ExperimentSpec, registry: Registry, device: str,
                 run_dir: str | Path, model_dir: str | Path):
        self.spec = spec
        self.registry = registry
        self.device_name = device
        self.store = RunStore(run_dir)
        self.model_dir = Path(model_dir)
        self._data = None
        self._data_info: dict[str, Any] | None = None
        self._models: dict[str, Any] = {}

    @functools.cached_property
    def device(self):
        """The torch device the cells run on (torch is imported on first use)."""
        import torch

        return torch.device(self.device_name)

    def model_path(self, cell: Cell) -> Path:
        """Where the trained weights of ``cell`` are cached."""
        return self.model_dir / f"{cell.key}.pt"

    # ------------------------------------------------------------------ data
    def data(self):
        """The dataset with the experiment's subsets applied (loaded once)."""
        if self._data is None:
            from .components import LoadedData

            spec = self.spec.data
            loaded = spec.dataset.create(self.registry).load(spec.root)
            tr, te = spec.train_subset, spec.test_subset
            self._data = LoadedData(loaded.info, loaded.x_train[:tr], loaded.y_train[:tr],
                                    loaded.x_test[:te], loaded.y_test[:te])
            info = dataclasses.asdict(loaded.info)
            info.update(n_train=len(self._data.x_train), n_test=len(self._data.x_test))
            self._data_info = info
        return self._data

    def attack_factory(self, where: str):
        """``attack(name, options) -> Attack``: a validated, ready attack component."""
        from .config import component_spec

        def make_attack(name: str, options: dict[str, Any]):
            return component_spec("attack", name, options, registry=self.registry,
                                  where=where).create(self.registry)

        return make_attack

    # ------------------------------------------------------------------ models
    def model(self, cell: Cell, *, progress: bool = False,
              messages: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
        """The trained model of ``cell`` (from memory, the cache, or by training it) and
        the facts for its record (``cached``, ``train_seconds``, ``history``)."""
        import torch

        from .components import TrainingContext

        if cell.key in self._models:
            return self._models[cell.key]
        data = self.data()
        path = self.model_path(cell)
        history_path = self.store.cell_dir(cell.id) / "history.parquet"
        cached_history = path.with_suffix(".history.parquet")
        factory = cell.model.component.create(self.registry)
        defenses = [d.create(self.registry) for d in cell.defense.defenses]
        torch.manual_seed(cell.torch_seed)
        generator = torch.Generator().manual_seed(cell.torch_seed)
        ctx = TrainingContext(info=data.info, device=self.device,
                              epochs=cell.model.training.epochs, generator=generator,
                              attack=self.attack_factory(f"defenses.{cell.defense.label}"),
                              data=data)
        model = factory.build(data.info)
        for defense in defenses:
            model = defense.wrap_model(model, ctx)
        model = model.to(self.device)
        facts: dict[str, Any] = {}
        if path.is_file() and self._load_cached(model, path, messages):
            facts["cached"] = True
            if not history_path.is_file() and cached_history.is_file():
                atomic_write_bytes(history_path, cached_history.read_bytes())
        else:
            from .training import train

            start = time.perf_counter()
            factory.init_from_data(model, data.x_train.to(self.device),
                                   data.y_train.to(self.device))
            history = train(model, factory, data, cell.model.training, defenses, ctx,
                            progress=progress, desc=f"train {cell.id}")
            atomic_write_parquet(history_path, history)
            atomic_write_parquet(cached_history, history)
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            atomic_write_bytes(path, buffer.getvalue())
            facts.update(cached=False, train_seconds=round(time.perf_counter() - start, 3))
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self._store_first_layer(cell, model)
        facts["history"] = history_path.is_file()
        if len(self._models) >= 2:
            self._models.pop(next(iter(self._models)))
        self._models[cell.key] = (model, facts)
        return model, facts

    def _load_cached(self, model, path: Path, messages: list[str] | None) -> bool:
        """Load cached weights into ``model``; a damaged file is moved to ``damaged/``
        beside it (False: the model is trained again)."""
        import torch

        try:
            model.load_state_dict(torch.load(path, map_location=self.device,
                                             weights_only=True))
            return True
        except Exception as err:
            target = set_aside(path, path.parent / "damaged")
            if messages is not None:
                messages.append(f"{path}: damaged cached model ({_error(err)}); moved to "
                                f"{target}, training it again")
            return False

    def _store_first_layer(self, cell: Cell, model) -> None:
        """Keep the first weight layer (conv filters or linear rows) for reports."""
        import numpy as np

        path = self.store.first_layer_path(cell.id)
        if path.is_file():
            return
        weight = next((p for p in model.parameters() if p.dim() >= 2), None)
        if weight is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, weight.detach().cpu().float().numpy())
        atomic_write_bytes(path, buffer.getvalue())

    # ------------------------------------------------------------------ cells
    def run_cell(self, work: CellWork) -> CellOutcome:
        """See :func:`run_cell`."""
        cell = work.cell
        record = CellRecord(cell=cell.identity(), key=cell.key, status="running")
        outcome = CellOutcome(cell=record, units={})
        try:
            model, facts = self.model(cell, progress=work.progress, messages=outcome.messages)
            for name, value in facts.items():
                setattr(record, name, value)
            if work.cell_metrics:
                outcome.metric_errors = self.cell_metrics(cell, model, work)
                record.metrics_key = metrics_key(cell, self.spec)
            record.status = "done"
        except CONTAINED as err:
            record.status, record.error = "failed", _error(err)
            record.traceback = traceback.format_exc()
            for unit in work.units:
                outcome.units[unit.id] = UnitRecord(
                    cell=cell.id, attack=unit.attack.label, key=unit.key, status="failed",
                    error=f"cell failed: {record.error}")
        else:
            sources = {(c.model.label, c.defense.label): c for c in work.sources}
            for unit in work.units:
                outcome.units[unit.id] = self.run_unit(unit, model, sources)
        outcome.data = self._data_info
        return outcome

    def cell_metrics(self, cell: Cell, model, work: CellWork) -> dict[str, str]:
        """Write the per-cell metric rows; return the tracebacks of metrics that raised,
        by ``NAME@CELL``."""
        import pandas as pd

        from .components import CellData
        from .metric_pipeline import cell_rows

        history_path = self.store.cell_dir(cell.id) / "history.parquet"
        history = pd.read_parquet(history_path) if history_path.is_file() else pd.DataFrame()
        cell_data = CellData(cell.identity(), model, self.data(), history, self.device,
                             attack=self.attack_factory(f"metrics.{cell.id}"))
        rows, failed = cell_rows([m.create(self.registry) for m in self.spec.metrics],
                                 cell_data)
        path = self.store.cell_dir(cell.id) / "metrics.parquet"
        if len(rows):
            atomic_write_parquet(path, rows)
        else:
            path.unlink(missing_ok=True)
        return {f"{name}@{cell.id}": trace for name, trace in failed.items()}

    # ------------------------------------------------------------------ units
    def run_unit(self, unit: Unit, model, sources: dict[tuple[str, str], Cell]) -> UnitRecord:
        """Run one unit, write its part; its record (failed with the traceback when the
        attack, or the host's checks of its output, raised)."""
        record = UnitRecord(cell=unit.cell.id, attack=unit.attack.label, key=unit.key)
        try:
            source = (self.model(sources[unit.attack.source])[0] if unit.attack.source
                      else None)
            attack = unit.attack.component.create(self.registry)
            attack.prepare()  # the unit's seconds are the attack's and the re-check's
            from . import counting, evaluation  # noqa: F401  (the host's, imported likewise)
            start = time.perf_counter()
            rows, arrays, result, library = self._attack(unit, attack, model, source)
        except CONTAINED as err:
            record.status, record.error = "failed", _error(err)
            record.traceback = traceback.format_exc()
            return record
        record.status = "done"
        record.seconds = round(time.perf_counter() - start, 3)
        record.rows = len(rows)
        record.over_budget = int((~rows["within_budget"]).sum())
        record.library = library
        record.library_version = result.library_version
        record.details = _json_scalars(result.details)
        if arrays:
            import numpy as np

            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)
            atomic_write_bytes(self.store.artifact_path(unit.cell.id, unit.attack.label),
                               buffer.getvalue())
        write_part(self.store.part_path(unit.id), rows, unit.key, _flat(record))
        return record

    def _attack(self, unit: Unit, attack, model, source):
        """Run ``attack`` on copies of the inputs, check the model is untouched and the
        budgets are the requested ones, and re-check the output into rows."""
        import numpy as np
        import torch

        from .components import ThreatModel
        from .counting import PassCounter
        from .evaluation import result_rows

        data = self.data()
        spec = unit.attack
        generator = torch.Generator().manual_seed(unit.attack_seed)
        n = min(spec.samples or len(data.x_test), len(data.x_test))
        x, y = data.x_test[:n], data.y_test[:n]
        samples = np.arange(n)
        targets, index = _targets(y, spec.targets, data.info.num_classes, generator)
        if index is not None:
            x, y, samples = x[index], y[index], samples[index.numpy()]
        guarded = [m for m in (model, source) if m is not None]
        before = [_state(m) for m in guarded]
        attacked = x.to(self.device, copy=True)
        counters = [PassCounter(m, attacked) for m in guarded]  # the attack's view only
        threat_model = ThreatModel(attack.threat_model)
        try:
            result = attack.run(counters[0], attacked, y.to(self.device, copy=True),
                                list(spec.epsilons), bounds=data.info.bounds,
                                targets=None if targets is None else targets.to(self.device),
                                source_model=counters[1] if source is not None else None,
                                generator=generator)
            check_epsilons(result.epsilons, spec.epsilons)
            result = dataclasses.replace(result, epsilons=list(spec.epsilons))
            library = result.library or type(attack).library
            constants = {**unit.cell.identity(), "attack": spec.label,
                         "attack_component": spec.component.name, "library": library,
                         "library_version": result.library_version,
                         "threat_model": threat_model.value}
            # a lazy sweep attacks as it is read: the guard below covers it too
            rows, arrays = result_rows(
                model, result, x, y, samples, targets, threat_model=threat_model,
                bounds=data.info.bounds, num_classes=data.info.num_classes,
                batch_size=getattr(attack.options, "batch_size", 0) or RECHECK_BATCH,
                device=self.device,
                examples=spec.examples, counters=counters, constants=constants)
        finally:
            changed = [name for m, state in zip(guarded, before) for name in
                       _restore(m, state)]
        if changed:
            raise RuntimeError(f"attack {spec.label!r} changed the model's state "
                               f"({', '.join(changed[:5])}); the model was restored and "
                               f"the unit's results discarded")
        return rows, arrays, result, library


RECHECK_BATCH = 256
"""Inputs per forward pass of the host's re-check of a unit, unless the attack's own
``batch_size`` option (when it has one and it is not 0) says otherwise."""


def check_epsilons(returned, requested) -> None:
    """Raise ValueError unless an attack's ``returned`` budgets are the ``requested`` grid
    (up to float32 rounding)."""
    import numpy as np

    got = np.asarray(list(returned), dtype="float64")
    want = np.asarray(list(requested), dtype="float64")
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-6, atol=0.0):
        raise ValueError(f"the attack returned budgets {got.tolist()} for the requested "
                         f"{want.tolist()}")


def _state(model) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _restore(model, state: dict[str, Any]) -> list[str]:
    """Names of the entries of ``model``'s state that differ from ``state`` (restored,
    with eval mode)."""
    import torch

    current = model.state_dict()
    changed = [k for k, v in state.items()
               if k not in current or not torch.equal(current[k], v)]
    if changed:
        model.load_state_dict(state)
    model.eval()
    return changed


def _targets(y, mode: str | None, num_classes: int, generator):
    """Targets of a targeted sweep and the index of the input each one attacks."""
    import torch

    if mode is None:
        return None, None
    if mode == "all":
        others = torch.stack([torch.tensor([c for c in range(num_classes) if c != int(lab)])
                              for lab in y])
        return others.flatten(), torch.arange(len(y)).repeat_interleave(num_classes - 1)
    if mode == "cyclic":
        return (y + 1) % num_classes, torch.arange(len(y))
    offset = torch.randint(1, num_classes, (len(y),), generator=generator)
    return (y + offset) % num_classes, torch.arange(len(y))


def _json_scalars(details: dict[str, Any]) -> dict[str, Any]:
    """The entries of an attack's ``details`` that belong in run.json (no tensors)."""
    return {k: v for k, v in details.items()
            if v is None or isinstance(v, (str, bool, int, float))}


def _flat(record: UnitRecord) -> dict[str, Any]:
    out = dataclasses.asdict(record)
    out.update(out.pop("extra"))
    return out


def component_raw(spec: ComponentSpec) -> dict[str, Any]:
    """A component choice as JSON-able data: its name and parsed options."""
    return {"name": spec.name, "options": dataclasses.asdict(spec.options)}


def metrics_key(cell: Cell, spec: ExperimentSpec) -> str:
    """Hash of a cell and the metric configuration: the per-cell metrics are recomputed
    when it changes."""
    return stable_hash({"cell": cell.key, "metrics": [component_raw(m) for m in spec.metrics]})


def set_aside(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` (a unique name; never overwrites); the new path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{path.stem}.{n}{path.suffix}"
    path.replace(target)
    return target
