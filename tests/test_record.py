"""The run record (run.json as typed objects) and the documented table schemas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robench import RobenchError, RunRecord, schema
from robench.record import SCHEMA_VERSION
from robench.results import RunStore

REFERENCE = Path(__file__).resolve().parents[1] / "reports" / "quickstart"


def test_reference_run_round_trips_unchanged():
    raw = json.loads((REFERENCE / "run.json").read_text())
    record = RunRecord.from_dict(raw)
    assert record.to_dict() == {**raw, "schema_version": SCHEMA_VERSION}
    assert set(record.units) == set(raw["units"])
    unit = next(iter(record.units.values()))
    assert unit.status == raw["units"][next(iter(raw["units"]))]["status"]


def test_unknown_keys_survive_a_round_trip():
    raw = json.loads((REFERENCE / "run.json").read_text())
    raw["future_key"] = {"a": 1}
    first_unit = next(iter(raw["units"]))
    raw["units"][first_unit]["future_field"] = 3
    out = RunRecord.from_dict(raw).to_dict()
    assert out["future_key"] == {"a": 1}
    assert out["units"][first_unit]["future_field"] == 3


def test_newer_schema_is_refused_not_misread():
    raw = json.loads((REFERENCE / "run.json").read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(RobenchError, match="newer"):
        RunRecord.from_dict(raw)


@pytest.mark.parametrize("text", ['{"units": ', "[]", '{"robench_version": "0"}'])
def test_damaged_record_names_the_file(tmp_path, text):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(RobenchError, match="run.json"):
        RunRecord.read(path)


def test_missing_record_says_it_is_not_a_run(tmp_path):
    with pytest.raises(RobenchError, match="not a robench run directory"):
        RunStore(tmp_path).record()


def test_failures_include_cells_units_and_metrics():
    raw = json.loads((REFERENCE / "run.json").read_text())
    record = RunRecord.from_dict(raw)
    assert record.failures() == {}
    uid = next(iter(record.units))
    record.units[uid].status, record.units[uid].error = "failed", "ValueError: x"
    record.metric_errors["auc"] = "Traceback ...\nZeroDivisionError: division by zero"
    assert record.failures() == {uid: "ValueError: x",
                                 "metric:auc": "ZeroDivisionError: division by zero"}


def test_store_writes_and_reads_the_typed_record(tmp_path):
    shutil.copy(REFERENCE / "run.json", tmp_path / "run.json")
    store = RunStore(tmp_path)
    record = store.record()
    record.status = "interrupted"
    store.write_record(record)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"
    assert store.record().status == "interrupted"


def test_result_schema_matches_the_stored_frame():
    frame = pd.concat([pd.read_parquet(p)
                       for p in sorted((REFERENCE / "results").glob("*.parquet"))])
    assert tuple(frame.columns) == schema.names(schema.RESULT_SCHEMA)
    for column in schema.RESULT_SCHEMA:
        dtype = frame[column.name].dtype
        if column.dtype == "str":
            assert pd.api.types.is_string_dtype(dtype), column.name
        else:
            assert str(dtype) == column.dtype, column.name


def test_history_schema_matches_the_stored_histories():
    frame = RunStore(REFERENCE).histories
    assert set(frame.columns) == set(schema.names(schema.HISTORY_SCHEMA))


def test_schema_table_lists_every_column():
    table = schema.describe(schema.RESULT_SCHEMA)
    for name in schema.names(schema.RESULT_SCHEMA):
        assert f"`{name}`" in table


def test_cells_removed_from_the_file_are_not_read(tmp_path):
    shutil.copy(REFERENCE / "run.json", tmp_path / "run.json")
    store = RunStore(tmp_path)
    live = next(iter(store.record().cells))
    for cell in (live, "removed--cell--s9"):
        folder = tmp_path / "cells" / cell
        folder.mkdir(parents=True)
        pd.DataFrame({"metric": ["m"], "value": [1.0], "cell": [cell]}).to_parquet(
            folder / "metrics.parquet")
        np.save(folder / "first_layer.npy", np.zeros((2, 3)))
    assert store.cell_metrics()["cell"].tolist() == [live]
    assert list(store.first_layers()) == [live]


def test_artifacts_of_units_removed_from_the_file_are_not_read(tmp_path):
    shutil.copy(REFERENCE / "run.json", tmp_path / "run.json")
    store = RunStore(tmp_path)
    record = store.record()
    live = next(iter(record.units.values()))
    failed = next(u for u in record.units.values() if u.cell != live.cell or
                  u.attack != live.attack)
    failed.status = "failed"
    store.write_record(record)
    for cell, attack in ((live.cell, live.attack), (failed.cell, failed.attack),
                         (live.cell, "removed_attack"), ("removed--cell--s9", live.attack)):
        store.artifact_path(cell, attack).parent.mkdir(parents=True, exist_ok=True)
        np.savez(store.artifact_path(cell, attack), clean=np.full(2, len(attack)))
    artifacts = store.artifacts()
    assert list(artifacts) == [(live.cell, live.attack)]
    np.testing.assert_array_equal(artifacts[(live.cell, live.attack)]["clean"],
                                  np.full(2, len(live.attack)))


def test_key_material_and_kept_results_round_trip_and_read_as_one_line():
    raw = json.loads((REFERENCE / "run.json").read_text())
    for entry in [*raw["cells"].values(), *raw["units"].values()]:
        entry.pop("key_material", None)  # as written before robench stored it
    raw.pop("kept", None)
    record = RunRecord.from_dict(raw)
    assert all(u.key_material is None for u in record.units.values()) and not record.kept
    assert "kept" not in record.to_dict() and "key_material" not in record.to_dict()["cells"][
        next(iter(record.cells))]
    cell, unit, other = next(iter(record.cells)), *list(record.units)[:2]
    record.units[unit].key_material = {"cell": "k", "epsilons": [0.1]}
    record.kept = {cell: ["torch 1 (now 2)"], unit: ["a 1 (now 2)", "torch 1 (now 2)"],
                   other: ["a 1 (now 2)", "torch 1 (now 2)"]}
    again = RunRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again.units[unit].key_material == {"cell": "k", "epsilons": [0.1]}
    assert again.kept == record.kept
    assert again.kept_summary() == ("1 model trained with torch 1 (now 2); 2 units computed "
                                    "with a 1 (now 2); torch 1 (now 2)")
    assert RunRecord.from_dict(raw).kept_summary() == ""
