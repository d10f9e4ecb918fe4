"""Expands an experiment into cells and units, and runs them resumably.

A *cell* is (dataset, model, defense stack, seed): one trained model. A *unit* is
(cell, attack): one attack's whole epsilon sweep on that model, the smallest piece of
work whose results are stored. Each finished unit is written atomically to its own
parquet part and marked done in run.json, so a rerun skips it. Seeds derive from the
identity of a cell (and unit), never from the order of work, so a resumed run gives the
same numbers as an uninterrupted one. Models are cached under ``models/`` (or the
experiment's ``model_cache``, shared between runs) by a hash of everything that
determines them, with their training history beside them. One failing cell or unit is
recorded with its traceback and the others still run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
import subprocess
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .config import AttackSpec, DefenseStack, ExperimentSpec, ModelSpec, stable_hash
from .plugins import Registry, get_registry
from .results import RESULT_COLUMNS, RunStore, atomic_write_bytes, atomic_write_parquet

LIBRARIES = ("torch", "torchvision", "adversarial-robustness-toolbox", "foolbox",
             "torchattacks", "numpy", "pandas", "scikit-learn", "pluggy")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One trained model: a model entry, a defense stack and a seed."""

    model: ModelSpec
    defense: DefenseStack
    seed: int
    dataset: str
    key: str  # hash of everything that determines the trained weights

    @property
    def id(self) -> str:
        return f"{self.model.label}--{self.defense.label}--s{self.seed}"

    @property
    def torch_seed(self) -> int:
        return int(self.key[:8], 16)

    def identity(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "model": self.model.label,
                "defense": self.defense.label, "seed": self.seed, "cell": self.id}


@dataclasses.dataclass(frozen=True)
class Unit:
    """One attack's sweep on one cell."""

    cell: Cell
    attack: AttackSpec
    key: str

    @property
    def id(self) -> str:
        return f"{self.cell.id}--{self.attack.label}"


def _component_raw(spec) -> dict[str, Any]:
    return {"name": spec.name, "options": dataclasses.asdict(spec.options)}


def plan(spec: ExperimentSpec) -> tuple[list[Cell], list[Unit]]:
    """The cells and units of an experiment, in execution order."""
    data = spec.data
    data_key = {"dataset": _component_raw(data.dataset), "train_subset": data.train_subset}
    cells, units = [], []
    for model in spec.models:
        stacks = [s for s in spec.defenses
                  if model.defenses is None or s.label in model.defenses]
        for stack in stacks:
            for seed in spec.seeds:
                key = stable_hash({
                    "data": data_key, "model": _component_raw(model.component),
                    "training": dataclasses.asdict(model.training),
                    "defenses": [_component_raw(d) for d in stack.defenses], "seed": seed,
                })
                cells.append(Cell(model, stack, seed, data.dataset.name, key))
    by_labels = {(c.model.label, c.defense.label, c.seed): c for c in cells}
    for cell in cells:
        for attack in spec.attacks:
            source_key = (by_labels[(*attack.source, cell.seed)].key if attack.source else None)
            key = stable_hash({
                "cell": cell.key, "attack": _component_raw(attack.component),
                "epsilons": attack.epsilons, "samples": attack.samples,
                "test_subset": data.test_subset, "targets": attack.targets,
                "source": source_key,
            })
            units.append(Unit(cell, attack, key))
    return cells, units


def resolve_device(device: str):
    """``auto`` -> CUDA when available, else CPU; otherwise the named device."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from .errors import RobenchError

        raise RobenchError(f"device {device!r} requested but CUDA is not available; "
                           f"use --device cpu or auto")
    return dev


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


def _json_scalars(details: dict[str, Any]) -> dict[str, Any]:
    """The entries of an attack's ``details`` that belong in run.json (no tensors)."""
    return {k: v for k, v in details.items()
            if v is None or isinstance(v, (str, bool, int, float))}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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
        self.cells, self.units = plan(spec)
        self._models: dict[str, Any] = {}
        self._data = None
        self.model_dir = (Path(spec.model_cache).expanduser() if spec.model_cache
                          else self.store.path / "models")

    def model_path(self, cell: Cell) -> Path:
        """Where the trained weights of ``cell`` are cached."""
        return self.model_dir / f"{cell.key}.pt"

    # ------------------------------------------------------------------ record
    def _init_record(self) -> dict[str, Any]:
        previous = self.store.read_run() if self.store.exists() else {}
        old_units = previous.get("units", {})
        units = {}
        for unit in self.units:
            rec = old_units.get(unit.id)
            if rec and rec.get("key") == unit.key and rec.get("status") == "done" \
                    and self.store.part_path(unit.id).is_file():
                units[unit.id] = rec
            else:
                if rec and self.store.part_path(unit.id).is_file():
                    self._supersede(unit.id, rec.get("key", "unknown"))
                units[unit.id] = {"cell": unit.cell.id, "attack": unit.attack.label,
                                  "key": unit.key, "status": "pending"}
        cells = {c.id: {"cell": c.identity(), "key": c.key,
                        **{k: v for k, v in previous.get("cells", {}).get(c.id, {}).items()
                           if k not in ("cell", "key")}} for c in self.cells}
        return {
            "robench_version": __version__,
            "experiment": {"name": self.spec.name, "file": self.spec.file,
                           "config": self.spec.raw, "config_hash": self.spec.config_hash},
            "data": previous.get("data"),
            "versions": _versions(self.registry),
            "git_commit": _git_commit(Path.cwd()),
            "device": None, "seeds": list(self.spec.seeds),
            "started": _now(), "finished": None, "duration_s": None, "status": "running",
            "attacks": {a.label: self._attack_record(a) for a in self.spec.attacks},
            "cells": cells, "units": units,
        }

    def _attack_record(self, spec: AttackSpec) -> dict[str, Any]:
        attack = spec.component.create(self.registry)  # the instance knows its threat model
        return {"component": spec.component.name, "library": attack.library,
                "threat_model": attack.threat_model.value, "epsilons": list(spec.epsilons),
                "source": spec.source}

    def _supersede(self, unit_id: str, old_key: str) -> None:
        """Move a part computed under an older configuration aside (never delete data)."""
        target = self.store.path / "superseded" / f"{unit_id}.{old_key}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.store.part_path(unit_id).replace(target)

    def _save(self) -> None:
        self.store.write_run(self.record)

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
            self.record["data"] = info
        return self._data

    # ------------------------------------------------------------------ models
    def _training_context(self, cell: Cell, generator):
        from .components import TrainingContext

        def make_attack(name: str, options: dict[str, Any]):
            from .config import component_spec

            return component_spec("attack", name, options, registry=self.registry,
                                  where=f"defenses.{cell.defense.label}").create(self.registry)

        return TrainingContext(info=self.data().info, device=self.device, epochs=
                               cell.model.training.epochs, generator=generator,
                               attack=make_attack)

    def model_for(self, cell: Cell):
        """The trained model of ``cell``: from memory, the cache, or by training it."""
        import torch

        if cell.key in self._models:
            return self._models[cell.key]
        data = self.data()
        rec = self.record["cells"][cell.id]
        path = self.model_path(cell)
        history_path = self.store.cell_dir(cell.id) / "history.parquet"
        cached_history = path.with_suffix(".history.parquet")
        factory = cell.model.component.create(self.registry)
        defenses = [d.create(self.registry) for d in cell.defense.defenses]
        torch.manual_seed(cell.torch_seed)
        generator = torch.Generator().manual_seed(cell.torch_seed)
        ctx = self._training_context(cell, generator)
        model = factory.build(data.info)
        for defense in defenses:
            model = defense.wrap_model(model, ctx)
        model = model.to(self.device)
        start = time.perf_counter()
        if path.is_file():
            model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
            rec["cached"] = True
            if not history_path.is_file() and cached_history.is_file():
                atomic_write_bytes(history_path, cached_history.read_bytes())
        else:
            factory.init_from_data(model, data.x_train.to(self.device),
                                   data.y_train.to(self.device))
            from .training import train

            history = train(model, factory, data, cell.model.training, defenses, ctx,
                            progress=self.progress, desc=f"train {cell.id}")
            atomic_write_parquet(history_path, history)
            atomic_write_parquet(cached_history, history)
            import io

            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            atomic_write_bytes(path, buffer.getvalue())
            rec["cached"] = False
            rec["train_seconds"] = round(time.perf_counter() - start, 3)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self._store_first_layer(cell, model)
        rec["status"] = "trained"
        rec["history"] = history_path.is_file()
        if len(self._models) >= 2:
            self._models.pop(next(iter(self._models)))
        self._models[cell.key] = model
        return model

    def _store_first_layer(self, cell: Cell, model) -> None:
        """Keep the first weight layer (conv filters or linear rows) for filter figures."""
        import io

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

    # ------------------------------------------------------------------ attacks
    def _targets(self, y, mode: str | None, num_classes: int, generator):
        import torch

        if mode is None:
            return None, None
        if mode == "all":
            others = torch.stack([torch.tensor([c for c in range(num_classes) if c != int(lab)])
                                  for lab in y])
            return others.flatten(), torch.arange(len(y)).repeat_interleave(num_classes - 1)
        offset = torch.randint(1, num_classes, (len(y),), generator=generator)
        return (y + offset) % num_classes, torch.arange(len(y))

    def run_unit(self, unit: Unit) -> None:
        """Run one attack sweep on one cell and store its rows atomically."""
        import numpy as np
        import torch

        from .components import ThreatModel
        from .evaluation import result_rows

        data = self.data()
        cell, spec = unit.cell, unit.attack
        model = self.model_for(cell)
        source = None
        if spec.source:
            src = next(c for c in self.cells if (c.model.label, c.defense.label, c.seed)
                       == (*spec.source, cell.seed))
            source = self.model_for(src)
        attack = spec.component.create(self.registry)
        generator = torch.Generator().manual_seed(int(unit.key[:8], 16))
        n = min(spec.samples or len(data.x_test), len(data.x_test))
        x, y = data.x_test[:n], data.y_test[:n]
        samples = np.arange(n)
        targets, index = self._targets(y, spec.targets, data.info.num_classes, generator)
        if index is not None:
            x, y, samples = x[index], y[index], samples[index.numpy()]
        start = time.perf_counter()
        result = attack.run(model, x.to(self.device), y.to(self.device), list(spec.epsilons),
                            bounds=data.info.bounds,
                            targets=None if targets is None else targets.to(self.device),
                            source_model=source, generator=generator)
        rows, arrays = result_rows(
            model, result, x, y, samples, targets,
            threat_model=ThreatModel(attack.threat_model), bounds=data.info.bounds,
            batch_size=getattr(attack.options, "batch_size", 256), device=self.device,
            examples=spec.examples)
        for col, value in cell.identity().items():
            rows[col] = value
        rows["attack"] = spec.label
        rows["attack_component"] = spec.component.name
        rows["library"] = result.library or type(attack).library
        rows["library_version"] = result.library_version
        rows["threat_model"] = ThreatModel(attack.threat_model).value
        rows = rows[list(RESULT_COLUMNS)]
        atomic_write_parquet(self.store.part_path(unit.id), rows)
        if arrays:
            path = self.store.artifact_path(cell.id, spec.label)
            path.parent.mkdir(parents=True, exist_ok=True)
            import io

            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)
            atomic_write_bytes(path, buffer.getvalue())
        over = int((~rows["within_budget"]).sum())
        self.record["units"][unit.id].update(
            status="done", seconds=round(time.perf_counter() - start, 3), rows=len(rows),
            over_budget=over, library=rows["library"].iat[0] if len(rows) else None,
            library_version=result.library_version, details=_json_scalars(result.details),
            error=None,
            traceback=None)

    # ------------------------------------------------------------------ metrics
    def _cell_metrics(self, cell: Cell, model) -> None:
        import pandas as pd

        from .components import CellData
        from .metric_pipeline import cell_rows

        history_path = self.store.cell_dir(cell.id) / "history.parquet"
        history = pd.read_parquet(history_path) if history_path.is_file() else pd.DataFrame()

        def make_attack(name: str, options: dict[str, Any]):
            from .config import component_spec

            return component_spec("attack", name, options, registry=self.registry,
                                  where="metrics").create(self.registry)

        cell_data = CellData(cell.identity(), model, self.data(), history, self.device,
                             attack=make_attack)
        rows, errors = cell_rows([m.create(self.registry) for m in self.spec.metrics],
                                 cell_data)
        self.record["cells"][cell.id]["metric_errors"] = errors
        path = self.store.cell_dir(cell.id) / "metrics.parquet"
        if len(rows):
            atomic_write_parquet(path, rows)
        self.record["cells"][cell.id]["metrics_key"] = self._metrics_key(cell)

    def _metrics_key(self, cell: Cell) -> str:
        return stable_hash({"cell": cell.key, "metrics": [_component_raw(m)
                                                          for m in self.spec.metrics]})

    def compute_metrics(self):
        """Metrics over the stored results plus the per-cell metric rows (the stages of
        :mod:`robench.metric_pipeline`)."""
        from .metric_pipeline import compute

        metrics, errors = compute([m.create(self.registry) for m in self.spec.metrics],
                                  self.store.results, self.store.cell_metrics())
        atomic_write_parquet(self.store.metrics_path, metrics)
        self.record["metric_errors"] = errors
        return metrics

    # ------------------------------------------------------------------ main
    def run(self) -> RunStore:
        """Run every pending unit, compute metrics, write the report; return the store."""
        from tqdm.auto import tqdm

        self.device = resolve_device(self.device_name)
        self.store.path.mkdir(parents=True, exist_ok=True)
        self.record = self._init_record()
        self.record["device"] = str(self.device)
        if Path(self.spec.file).is_file():
            atomic_write_bytes(self.store.path / "experiment.toml",
                               Path(self.spec.file).read_bytes())
        self._save()
        began = time.perf_counter()
        units_by_cell: dict[str, list[Unit]] = {}
        for unit in self.units:
            units_by_cell.setdefault(unit.cell.id, []).append(unit)
        pending = [c for c in self.cells
                   if any(self.record["units"][u.id]["status"] != "done"
                          for u in units_by_cell[c.id])
                   or self.record["cells"][c.id].get("metrics_key") != self._metrics_key(c)]
        executor = self.spec.executor.create(self.registry)
        bar = tqdm(total=sum(len(units_by_cell[c.id]) for c in pending), desc=self.spec.name,
                   unit="attack", disable=not self.progress)
        self.record["status"] = "running"
        try:
            for cell, _ in executor.map(lambda c: self._run_cell(c, units_by_cell[c.id], bar),
                                        pending):
                self._save()
        except KeyboardInterrupt:
            self.record["status"] = "interrupted"
            self._save()
            raise
        finally:
            bar.close()
        self.compute_metrics()
        failed = [u for u, r in self.record["units"].items() if r["status"] != "done"]
        self.record["status"] = "failed" if failed else "done"
        self.record["finished"] = _now()
        self.record["duration_s"] = round(time.perf_counter() - began, 3)
        self._save()
        return self.store

    def _run_cell(self, cell: Cell, units: list[Unit], bar) -> None:
        rec = self.record["cells"][cell.id]
        try:
            model = self.model_for(cell)
            if rec.get("metrics_key") != self._metrics_key(cell):
                self._cell_metrics(cell, model)
            rec.update(status="done", error=None, traceback=None)
        except Exception as err:
            rec.update(status="failed", error=f"{type(err).__name__}: {err}",
                       traceback=traceback.format_exc())
            for unit in units:
                if self.record["units"][unit.id]["status"] != "done":
                    self.record["units"][unit.id].update(status="failed",
                                                         error=f"cell failed: {rec['error']}")
            bar.update(len(units))
            return
        self._save()
        for unit in units:
            if self.record["units"][unit.id]["status"] == "done":
                bar.update(1)
                continue
            bar.set_postfix_str(unit.id)
            try:
                self.run_unit(unit)
            except Exception as err:
                self.record["units"][unit.id].update(
                    status="failed", error=f"{type(err).__name__}: {err}",
                    traceback=traceback.format_exc())
            self._save()
            bar.update(1)
