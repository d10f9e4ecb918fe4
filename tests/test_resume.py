"""Kill-and-resume at deterministic fault points, and damaged files set aside.

Each faulted run is a subprocess whose fault is injected by monkeypatching one write of
the host (the process then ends with ``os._exit``, as a kill would); the rerun in this
process must give exactly the rows of an uninterrupted run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from conftest import REPO, SMOKE, TESTS

from robench import api

KEY = ["cell", "attack", "epsilon", "sample"]

# the subprocess: a run of EXPERIMENT into OUT with one write replaced by FAULT
SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import plugin_fixtures
import robench.results, robench.work
from robench import api
from robench.plugins import build_registry

{fault}

api.run({path!r}, out={out!r}, registry=build_registry(autoload=False,
        plugins=[plugin_fixtures]), progress=False, report=False)
sys.exit(3)  # the fault never fired
"""

FAULTS = {
    # the second unit's part is written, then the process dies before its record
    "after_part_write": """
written = []
original = robench.work.write_part
def write_part(path, frame, key, record):
    original(path, frame, key, record)
    written.append(path)
    if len(written) == 2:
        os._exit(9)
robench.work.write_part = write_part
""",
    # run.json is half written (no atomic rename) when the process dies
    "during_run_json_write": """
calls = []
def write_record(self, record):
    calls.append(1)
    text = robench.results.json.dumps(record.to_dict(), default=str)
    if len(calls) == 3:
        self.run_json_path.write_text(text[: len(text) // 2])
        os._exit(9)
    self.run_json_path.write_text(text)
robench.results.RunStore.write_record = write_record
""",
    # the second model is half written when the process dies
    "during_model_save": """
saved = []
original = robench.work.atomic_write_bytes
def atomic_write_bytes(path, data):
    if path.suffix == ".pt":
        saved.append(path)
        if len(saved) == 2:
            path.write_bytes(data[: len(data) // 2])
            os._exit(9)
    original(path, data)
robench.work.atomic_write_bytes = atomic_write_bytes
""",
}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    path = root / "exp.toml"
    path.write_text(textwrap.dedent(SMOKE).replace("repeats = 2", "repeats = 3"))
    return path


@pytest.fixture(scope="module")
def clean(experiment, registry):
    run = api.run(experiment, out=experiment.parent / "clean", registry=registry,
                  progress=False)
    return run.results.sort_values(KEY).reset_index(drop=True)


def _faulted_run(experiment, out, fault: str) -> None:
    code = SCRIPT.format(tests=str(TESTS), path=str(experiment), out=str(out),
                         fault=FAULTS[fault])
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 9, proc.stderr


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_resume_after_fault_gives_the_rows_of_an_uninterrupted_run(
        fault, experiment, clean, registry, tmp_path, capfd):
    out = tmp_path / "run"
    _faulted_run(experiment, out, fault)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.parquet")}
    resumed = api.run(experiment, out=out, registry=registry, progress=False)
    assert resumed.status == "done", resumed.failures()
    after = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.parquet")}
    assert {k: after[k] for k in before} == before  # stored parts are not recomputed
    pd.testing.assert_frame_equal(resumed.results.sort_values(KEY).reset_index(drop=True),
                                  clean)
    err = capfd.readouterr().err
    if fault == "after_part_write":
        assert len(before) == 2  # the unrecorded part is adopted, not recomputed
    if fault == "during_run_json_write":
        assert "run.json: damaged run record" in err
        assert list((out / "damaged").glob("run*.json"))
    if fault == "during_model_save":
        assert "damaged cached model" in err
        damaged = list((out / "models" / "damaged").glob("*.pt"))
        assert len(damaged) == 1 and damaged[0].name in err


def test_damaged_results_part_is_set_aside_and_recomputed(experiment, clean, registry,
                                                          tmp_path, capfd):
    out = tmp_path / "run"
    api.run(experiment, out=out, registry=registry, progress=False)
    part = out / "results" / "mlp--l2--s0--noise.parquet"
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(Exception, match="mlp--l2--s0--noise.parquet"):
        api.load(out).results  # a damaged part is never read as if it were whole
    resumed = api.run(experiment, out=out, registry=registry, progress=False)
    assert f"{part}: damaged results part" in capfd.readouterr().err
    assert (out / "damaged" / part.name).is_file()
    pd.testing.assert_frame_equal(resumed.results.sort_values(KEY).reset_index(drop=True),
                                  clean)
