"""A small multi-cell benchmark gives the same rows through every executor (at the same
torch threads per cell), also when a Dask worker is killed in the middle of the run."""

from __future__ import annotations

import os
import signal
import time

import pytest

import robench
from robench_plugins.executors.dask import DaskExecutor

BENCHMARK = """
[experiment]
name = "cells"
seeds = [0, 1]
device = "cpu"
threads = 1
executor = "{executor}"
executor_options = {options}

[data]
dataset = "digits"

[training]
epochs = 1
batch_size = 64

[[models]]
name = "mlp"
hidden = [32]

[defenses]
none = []
l2 = [{{ defense = "weight_decay", coefficient = 0.01 }}]

[[attacks]]
name = "fgsm"
attack = "torchattacks.FGSM"
epsilons = [0.05, 0.1, 0.2]
samples = 50

[metrics]
use = ["robust_accuracy"]

[report]
formats = []
"""


def rows(tmp_path, executor: str, options: str = "{}"):
    """Run the benchmark through ``executor``; its results, in one canonical order."""
    path = tmp_path / f"{executor}.toml"
    path.write_text(BENCHMARK.format(executor=executor, options=options))
    run = robench.run(path, out=tmp_path / f"{executor}_run", progress=False)
    assert run.failures() == {}
    results = run.results
    key = ["cell", "attack", "epsilon", "sample", "target"]
    assert len(results) == 4 * 3 * 50 and not results.duplicated(key).any()
    return results.sort_values(key).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    return rows(tmp_path_factory.mktemp("local"), "local")


@pytest.fixture(scope="module")
def cluster():
    """A real Dask LocalCluster of two single-threaded worker processes, and a client."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield cluster, client


def same_rows(got, expected):
    import pandas as pd

    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_processes_gives_the_rows_of_local(tmp_path, local_rows):
    same_rows(rows(tmp_path, "processes", "{ max_workers = 2 }"), local_rows)


def test_dask_gives_the_rows_of_local(tmp_path, local_rows, cluster):
    address = cluster[0].scheduler_address
    same_rows(rows(tmp_path, "dask", f'{{ address = "{address}" }}'), local_rows)


def test_dask_run_survives_a_killed_worker(tmp_path, local_rows, cluster, monkeypatch):
    _, client = cluster
    killed = []
    original = DaskExecutor.map

    def map_killing_a_worker(self, fn, items):
        outcomes = original(self, fn, items)
        yield next(outcomes)
        busy = []
        for _ in range(200):  # a worker picks up the next cell within moments
            busy = [addr for addr, keys in client.processing().items() if keys]
            if busy:
                break
            time.sleep(0.05)
        victim = (busy or sorted(client.scheduler_info()["workers"]))[0]
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        yield from outcomes

    monkeypatch.setattr(DaskExecutor, "map", map_killing_a_worker)
    address = client.scheduler.address
    same_rows(rows(tmp_path, "dask", f'{{ address = "{address}" }}'), local_rows)
    assert killed


def test_processes_records_a_cell_past_its_time_limit(tmp_path):
    text = (BENCHMARK.format(executor="processes", options="{ max_workers = 1 }")
            .replace("seeds = [0, 1]", "seeds = [0]").replace("epochs = 1", "epochs = 30")
            .replace("threads = 1", "threads = 1\nunit_timeout = 0.2"))
    path = tmp_path / "slow.toml"
    path.write_text(text)
    run = robench.run(path, out=tmp_path / "run", progress=False)
    expected = {f"mlp--{d}--s0{unit}" for d in ("none", "l2") for unit in ("", "--fgsm")}
    assert set(run.failures()) == expected
    assert all("time limit of 0.2 s" in error for error in run.failures().values())
    assert run.record.status == "failed" and len(run.results) == 0
