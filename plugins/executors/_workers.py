"""What the out-of-process executors share: the worker count and threads of a pool, the
thread settings of a worker, the GPUs to spread workers over, the time limits of running
items, and the outcome of an item a worker lost."""

from __future__ import annotations

import os
import time
from collections.abc import Hashable
from typing import Any, ClassVar

from robench import Executor

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables that size the thread pools of torch's and numpy's libraries."""

POLL_S = 0.5
"""How often an executor looks for items that ran past their time limit, in seconds."""


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(threads_per_worker: int) -> int:
    """As many workers as fit the cores without oversubscription (at least one)."""
    return max(1, usable_cores() // threads_per_worker)


def pool_size(configured: int | None, gpus: list[int], cpu_workers: int) -> int:
    """Workers to start: the configured number, else one per GPU, else ``cpu_workers``."""
    return configured or len(gpus) or cpu_workers


def limit_threads(threads: int) -> None:
    """Give this process ``threads`` torch threads (and as many for OpenMP/BLAS).

    Called first in a fresh worker: the variables only take effect before the libraries
    start their pools, ``torch.set_num_threads`` whenever it is called.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def item_gpus(items: Any) -> list[int]:
    """The GPU indices to spread workers over: every visible GPU when the items run on
    ``device = "cuda"`` (all of them), none for ``cuda:N`` (one named GPU), the CPU or
    without a GPU."""
    devices = {getattr(item, "device", None) for item in items}
    if devices != {"cuda"}:
        return []
    import torch

    return list(range(torch.cuda.device_count()))


def lost_outcome(item: Any, error: str) -> Any:
    """The outcome of an item whose worker was lost or stopped: the item's own failure
    record, made by ``item.failed(error)``."""
    return item.failed(error)


def timeout_outcome(item: Any) -> Any:
    """The outcome of an item stopped past its ``timeout``: failed, naming the limit."""
    return lost_outcome(item, f"stopped after its time limit of {item.timeout:g} s")


class WorkerPool(Executor):
    """Base of the executors that run items in a pool of worker processes, each with
    ``threads_per_worker`` threads; the option named by ``workers_option`` sets the
    worker count (default: as many as fit the cores, one per GPU on ``cuda``)."""

    workers_option: ClassVar[str] = ""
    """Name of the option that sets the worker count."""

    @property
    def threads(self) -> int:
        """torch threads of each worker (``threads_per_worker``): the thread count of
        every cell unless ``[experiment] threads`` says otherwise."""
        return self.options.threads_per_worker

    @property
    def workers(self) -> int:
        """Workers on the CPU: the option, else as many as fit the cores."""
        return getattr(self.options, self.workers_option) or default_workers(self.threads)

    def pool_size(self, gpus: list[int]) -> int:
        """Workers to start for items on ``gpus``: the option, else one per GPU, else
        as many as fit the cores."""
        return pool_size(getattr(self.options, self.workers_option), gpus, self.workers)


class Deadlines:
    """Where and since when each running item runs, and which ran past its limit.

    Items are named by any hashable ``key``; ``where`` says what to stop (a process id,
    a worker's address). A key started again restarts its clock.
    """

    def __init__(self) -> None:
        self.running: dict[Hashable, tuple[Any, float]] = {}
        self.stopped: set[Hashable] = set()

    def start(self, key: Hashable, where: Any) -> None:
        """Item ``key`` starts now on ``where``."""
        self.running[key] = (where, time.monotonic())

    def end(self, key: Hashable) -> None:
        """Item ``key`` no longer runs (finished, lost or stopped)."""
        self.running.pop(key, None)

    def overdue(self, limits: dict[Hashable, float | None]) -> list[tuple[Hashable, Any]]:
        """The running items past their limit (seconds, None: no limit) and where they
        run, each reported once (it then counts as stopped)."""
        now = time.monotonic()
        late = [(key, where) for key, (where, start) in self.running.items()
                if key not in self.stopped and limits.get(key) is not None
                and now - start > limits[key]]
        self.stopped.update(key for key, _ in late)
        return late
