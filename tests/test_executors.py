"""The out-of-process executors on toy items: results, threads, dead workers, timeouts.

The items and the function are module-level so that spawned workers can unpickle them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from robench.options import parse_options
from robench_plugins.executors import _workers
from robench_plugins.executors.dask import DaskExecutor
from robench_plugins.executors.processes import ProcessesExecutor


@dataclasses.dataclass(frozen=True)
class Toy:
    """A work item: ``action`` says what the worker does with it."""

    value: int
    action: str = "square"  # square | die | die_once | sleep | raise
    marker: str = ""        # die_once: dies unless this file exists (and creates it)
    device: str = "cpu"
    timeout: float | None = None

    def failed(self, error: str):
        return ("failed", self.value, error)


def toy(item: Toy):
    """Square the value; report the worker's threads and visible GPUs."""
    import torch

    if item.action == "die" or (item.action == "die_once" and not Path(item.marker).exists()):
        if item.marker:
            Path(item.marker).touch()
        os._exit(3)
    if item.action == "sleep":
        time.sleep(120)
    if item.action == "raise":
        raise ValueError(f"bad item {item.value}")
    return ("done", item.value ** 2, torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"),
            os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid())


def processes(**options):
    return ProcessesExecutor(parse_options(ProcessesExecutor.Options, options))


def dask(**options):
    return DaskExecutor(parse_options(DaskExecutor.Options, options))


def outcomes(executor, items):
    return {item.value: outcome for item, outcome in executor.map(toy, items)}


def test_processes_runs_every_item_with_its_threads():
    items = [Toy(v) for v in range(5)]
    got = outcomes(processes(max_workers=2, threads_per_worker=2), items)
    assert {v: o[1] for v, o in got.items()} == {v: v * v for v in range(5)}
    assert {(o[2], o[3]) for o in got.values()} == {(2, "2")}
    assert len({o[5] for o in got.values()} | {os.getpid()}) >= 2  # not in this process


def test_processes_reruns_an_item_whose_worker_died_once(tmp_path):
    items = [Toy(1), Toy(2, "die_once", marker=str(tmp_path / "died")), Toy(3)]
    got = outcomes(processes(max_workers=2), items)
    assert {v: o[:2] for v, o in got.items()} == {1: ("done", 1), 2: ("done", 4),
                                                  3: ("done", 9)}


def test_processes_records_an_item_that_kills_every_worker():
    got = outcomes(processes(max_workers=2, retries=1), [Toy(1), Toy(2, "die"), Toy(3)])
    assert got[2][0] == "failed" and "died 2 times" in got[2][2]
    assert got[1][:2] == ("done", 1) and got[3][:2] == ("done", 9)


def test_processes_stops_an_item_past_its_timeout():
    began = time.monotonic()
    got = outcomes(processes(max_workers=2),
                   [Toy(1, "sleep", timeout=1.0), Toy(2), Toy(3, timeout=100.0)])
    assert got[1][0] == "failed" and "time limit of 1 s" in got[1][2]
    assert got[2][:2] == ("done", 4) and got[3][:2] == ("done", 9)
    assert time.monotonic() - began < 120  # the sleeping worker was stopped, not awaited


def test_processes_propagates_an_error_of_the_function():
    with pytest.raises(ValueError, match="bad item 2"):
        outcomes(processes(max_workers=1), [Toy(1), Toy(2, "raise")])


def test_processes_refuses_fork():
    from robench.errors import ConfigError

    with pytest.raises(ConfigError, match="spawn"):
        processes(start_method="fork")


def test_default_workers_fill_the_cores_without_oversubscription(monkeypatch):
    monkeypatch.setattr(_workers, "usable_cores", lambda: 16)
    assert processes(threads_per_worker=4).workers == 4
    assert processes(threads_per_worker=32).workers == 1
    assert dask(threads_per_worker=3).workers == 5
    assert dask(n_workers=7).workers == 7
    assert _workers.pool_size(None, [0, 1, 2], 16) == 3
    assert _workers.pool_size(2, [0, 1, 2], 16) == 2
    assert processes().pool_size([0, 1, 2]) == dask().pool_size([0, 1]) + 1 == 3
    assert processes(max_workers=5).pool_size([0, 1, 2]) == 5
    assert dask(threads_per_worker=8).pool_size([]) == 2


def test_deadlines_report_each_late_item_once(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(_workers.time, "monotonic", lambda: clock[0])
    deadlines = _workers.Deadlines()
    deadlines.start("a", 11)
    deadlines.start("b", 12)
    deadlines.start("c", 13)
    clock[0] = 102.5
    limits = {"a": 2.0, "b": 3.0, "c": None}
    assert deadlines.overdue(limits) == [("a", 11)]
    assert deadlines.overdue(limits) == []
    deadlines.start("b", 14)  # started again (elsewhere): its clock restarts
    clock[0] = 105.0
    assert deadlines.overdue(limits) == []
    clock[0] = 105.6
    assert deadlines.overdue(limits) == [("b", 14)]
    deadlines.end("a")
    assert set(deadlines.running) == {"b", "c"} and deadlines.stopped == {"a", "b"}


def test_gpus_are_spread_only_for_all_of_cuda():
    assert _workers.item_gpus([Toy(1, device="cpu")]) == []
    assert _workers.item_gpus([Toy(1, device="cuda:0")]) == []


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a GPU")
def test_processes_pin_one_gpu_per_worker():
    import torch

    count = torch.cuda.device_count()
    got = outcomes(processes(), [Toy(v, device="cuda") for v in range(2 * count)])
    assert {o[4] for o in got.values()} == {str(k) for k in range(count)}


def test_dask_local_cluster_runs_every_item_and_records_a_lost_one():
    items = [Toy(1), Toy(2, "die"), Toy(3)]
    got = outcomes(dask(n_workers=2, threads_per_worker=1, retries=0), items)
    assert got[1][:4] == ("done", 1, 1, "1") and got[3][:2] == ("done", 9)
    assert got[2][0] == "failed" and "died" in got[2][2]


@pytest.mark.parametrize("retries", [0, 1])
def test_dask_stops_an_item_past_its_timeout_and_reruns_those_it_interrupted(retries):
    # one worker: the sleeping item holds it, the others wait on it and are interrupted
    # by its restart (with no retries allowed, only a resubmission saves them)
    began = time.monotonic()
    items = [Toy(1, "sleep", timeout=1.0), Toy(2), Toy(3, timeout=100.0), Toy(4)]
    got = outcomes(dask(n_workers=1, retries=retries), items)
    assert got[1][0] == "failed" and "time limit of 1 s" in got[1][2]
    assert {v: o[:2] for v, o in got.items() if v != 1} == {2: ("done", 4), 3: ("done", 9),
                                                            4: ("done", 16)}
    assert time.monotonic() - began < 120  # the sleeping worker was restarted, not awaited


def test_dask_gpu_plugin_gives_each_worker_its_own_gpu(monkeypatch):
    from robench_plugins.executors._dask_gpu import PinGpu

    plugin = PinGpu([3, 5])
    seen = []
    for name in (0, 1, 2):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        plugin.setup(type("Worker", (), {"name": name})())
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["3", "5", "3"]


def test_cells_run_with_the_executors_threads_per_worker(monkeypatch):
    from types import SimpleNamespace

    from robench.runner import thread_count

    monkeypatch.setattr(_workers, "usable_cores", lambda: 16)
    unset = SimpleNamespace(threads=None)
    assert thread_count(unset, processes(threads_per_worker=4)) == 4
    assert thread_count(unset, dask()) == 1
    assert thread_count(SimpleNamespace(threads=3), processes(threads_per_worker=4)) == 3


def test_a_parent_on_the_cpu_needs_no_torch(tmp_path):
    # the parent of out-of-process executors resolves the device and builds its own
    # worker without paying torch's import (its workers import it)
    import subprocess
    import sys

    code = ("import sys\n"
            "from robench.runner import resolve_device\n"
            "from robench.work import Worker\n"
            f"worker = Worker(None, None, resolve_device('cpu'), {str(tmp_path)!r}, "
            f"{str(tmp_path)!r})\n"
            "print('torch' in sys.modules)\n"
            "print(worker.device.type, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "cpu", "True"]
