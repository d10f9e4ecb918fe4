"""The run directory: tidy per-sample results, metrics, artifacts and provenance.

Layout of a run directory::

    run.json                provenance: config, hash, versions, device, seeds, timings,
                            per-cell and per-unit status (with tracebacks of failures)
    experiment.toml         the experiment file as it was run
    results/                parquet parts, one per finished (cell, attack) unit of the
                            current configuration; ``pandas.read_parquet("results")``
                            reads them all. Each part carries its unit's key and record
                            in the parquet metadata (:func:`part_info`)
    superseded/             parts of units the configuration no longer has, or computed
                            under an older configuration (never deleted)
    damaged/                files a resumed run found unreadable, set aside and recomputed
    metrics.parquet         tidy metrics table (metric, value, grouping columns)
    cells/<cell>/history.parquet      per-epoch train/test loss and accuracy
    cells/<cell>/metrics.parquet      metrics computed while the model was loaded
    cells/<cell>/first_layer.npy      first weight layer (filters), for figures
    artifacts/<cell>/<attack>.npz     example inputs (clean and adversarial per eps)
    models/<key>.pt         trained weights, keyed by a hash of what determines them, and
    models/<key>.history.parquet  their training history (``[experiment] model_cache``
                            moves both to a directory shared between runs)

Every file is written atomically (temporary file, then rename), so an interrupted run
never leaves a half-written part; files whose names start with "." are ignored by
parquet readers. Reading never needs torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import schema
from .errors import RobenchError
from .record import RunRecord

RESULT_COLUMNS = schema.names(schema.RESULT_SCHEMA)
"""Columns of the tidy per-sample result frame, one row per (cell, attack, eps, sample,
target); each is described in :data:`robench.schema.RESULT_SCHEMA`."""

CELL_COLUMNS = schema.names(schema.CELL_SCHEMA)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_parquet(path: Path, frame) -> None:
    """Write a DataFrame as parquet atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


PART_METADATA_KEY = b"robench.unit"
"""Parquet metadata key of a results part: JSON ``{"key": unit key, "record": {...}}``."""


def write_part(path: Path, frame, key: str, record: dict[str, Any]) -> None:
    """Write a results part atomically, with its unit ``key`` and ``record`` (the
    unit's run.json entry) in the parquet metadata, so a part identifies itself."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = json.dumps({"key": key, "record": record}, default=str).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           PART_METADATA_KEY: meta})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def part_info(path: Path) -> dict[str, Any]:
    """``{"key": ..., "record": ...}`` stored in a results part (empty for a part written
    without them); raises ``OSError``/``ValueError`` when the file is damaged. Reads only
    the file's footer."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).schema_arrow.metadata or {}
    raw = meta.get(PART_METADATA_KEY)
    return json.loads(raw) if raw else {}


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically, pretty-printed."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str)
                              + "\n").encode())


class RunStore:
    """Read and write access to one run directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # --------------------------------------------------------------- paths
    @property
    def run_json_path(self) -> Path:
        return self.path / "run.json"

    @property
    def results_dir(self) -> Path:
        return self.path / "results"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.parquet"

    def part_path(self, unit_id: str) -> Path:
        """Parquet part of one finished (cell, attack) unit."""
        return self.results_dir / f"{unit_id}.parquet"

    def cell_dir(self, cell_id: str) -> Path:
        return self.path / "cells" / cell_id

    def artifact_path(self, cell_id: str, attack: str) -> Path:
        return self.path / "artifacts" / cell_id / f"{attack}.npz"

    def first_layer_path(self, cell_id: str) -> Path:
        """The first weight layer of a cell's model (``(out, in, kh, kw)`` filters for a
        convolution, ``(out, features)`` for a linear layer), as a .npy file."""
        return self.cell_dir(cell_id) / "first_layer.npy"

    # --------------------------------------------------------------- run.json
    def exists(self) -> bool:
        return self.run_json_path.is_file()

    def record(self) -> RunRecord:
        """run.json as a typed :class:`robench.record.RunRecord` (RobenchError naming the
        file when it is missing or damaged)."""
        return RunRecord.read(self.run_json_path)

    def write_record(self, record: RunRecord) -> None:
        """Write ``record`` as run.json, atomically."""
        atomic_write_json(self.run_json_path, record.to_dict())

    # --------------------------------------------------------------- frames
    @property
    def results(self):
        """The tidy per-sample frame of every finished unit (empty frame if none).

        Each part is checked against run.json: a part whose stored unit key is not the
        recorded one, or a finished unit without its part, is a RobenchError naming the
        file (rerun the experiment to recompute it). ``frame.attrs`` carries what the
        dataset declared (``num_classes``, ``bounds``, ``eps_scale``), so metrics know
        chance level without the data.
        """
        import pandas as pd

        record = self.record()
        frames = []
        for unit_id in record.done_units():
            path = self.part_path(unit_id)
            try:
                stored = part_info(path).get("key")
            except (OSError, ValueError) as err:
                raise RobenchError(f"{path}: missing or damaged results part ({err}); run "
                                   f"the experiment again to recompute it") from None
            if stored != record.units[unit_id].key:
                raise RobenchError(f"{path}: holds unit key {stored!r}, but run.json records "
                                   f"{record.units[unit_id].key!r} for {unit_id}; run the "
                                   f"experiment again to recompute it")
            frames.append(pd.read_parquet(path))
        if not frames:
            frame = pd.DataFrame(columns=list(RESULT_COLUMNS))
        else:
            frame = pd.concat(frames, ignore_index=True)
        data = record.data or {}
        frame.attrs.update({k: data[k] for k in ("num_classes", "bounds", "eps_scale")
                            if k in data})
        return frame

    @property
    def metrics(self):
        """The tidy metrics frame (empty frame if not computed yet)."""
        import pandas as pd

        if not self.metrics_path.is_file():
            return pd.DataFrame(columns=["metric", "value"])
        return pd.read_parquet(self.metrics_path)

    @property
    def histories(self):
        """Per-epoch training curves of every trained cell, with the cell columns."""
        import pandas as pd

        frames = []
        for cell_id, rec in self.record().cells.items():
            path = self.cell_dir(cell_id) / "history.parquet"
            if path.is_file():
                frame = pd.read_parquet(path)
                for col in CELL_COLUMNS:
                    frame[col] = rec.cell[col]
                frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def cell_metrics(self):
        """Metric rows computed per cell while its model was loaded."""
        import pandas as pd

        live = self._live_cells()
        paths = sorted((self.path / "cells").glob("*/metrics.parquet"))
        frames = [pd.read_parquet(p) for p in paths if p.parent.name in live]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _live_cells(self) -> set[str]:
        """Ids of the cells of the run's current configuration: the folders of cells
        that a changed file no longer has stay on disk but are never read."""
        return set(self.record().cells) if self.exists() else set()

    def first_layers(self) -> dict[str, Any]:
        """First-layer weights by cell id (numpy arrays), for filter figures."""
        import numpy as np

        live = self._live_cells()
        return {p.parent.name: np.load(p) for p in
                sorted((self.path / "cells").glob("*/first_layer.npy")) if p.parent.name in live}

    def artifacts(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Stored example arrays by (cell id, attack label): ``{name: numpy array}``, of
        the finished units of the run's current configuration (the files of units that a
        changed file no longer has, or that failed since, stay on disk but are never
        read)."""
        import numpy as np

        record = self.record() if self.exists() else None
        done = {(rec.cell, rec.attack) for rec in record.units.values()
                if rec.status == "done"} if record else set()
        out = {}
        root = self.path / "artifacts"
        for path in sorted(root.glob("*/*.npz")):
            if (path.parent.name, path.stem) not in done:
                continue
            with np.load(path, allow_pickle=False) as npz:
                out[(path.parent.name, path.stem)] = {k: npz[k] for k in npz.files}
        return out
