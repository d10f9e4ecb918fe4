"""Runs cells on Dask distributed: a cluster on this machine or an existing one."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from . import _workers


@dataclasses.dataclass(frozen=True)
class DaskOptions:
    """Options of the ``dask`` executor."""

    address: str | None = dataclasses.field(
        default=None, metadata={"help": "address of a running Dask scheduler, e.g. "
                                "\"tcp://host:8786\" (default: start a LocalCluster on this "
                                "machine for the run)"})
    n_workers: int | None = dataclasses.field(
        default=None, metadata={"minimum": 1, "help": "workers of the LocalCluster "
                                "(default: the usable cores divided by threads_per_worker; "
                                "one per GPU when the cells run on device = \"cuda\" and "
                                "GPUs are present)"})
    threads_per_worker: int = dataclasses.field(
        default=1, metadata={"minimum": 1, "help": "torch (and OpenMP/BLAS) threads each "
                             "task runs with"})
    retries: int = dataclasses.field(
        default=1, metadata={"minimum": 0, "help": "times a LocalCluster re-runs a task "
                             "whose worker died before recording it as failed (an existing "
                             "scheduler keeps its own distributed.scheduler.allowed-failures)"})


STARTED_TOPIC = "robench-started"
"""The Dask event topic on which a task reports that it starts: [its key, its worker]."""


def _run_task(item: Any, fn: Any, threads: int) -> Any:
    """On a worker: report the start, then run one item with the executor's threads."""
    from distributed import get_worker

    worker = get_worker()
    worker.log_event(STARTED_TOPIC, [worker.get_current_task(), worker.address])
    _workers.limit_threads(threads)
    return fn(item)


class DaskExecutor(_workers.WorkerPool):
    """Dask distributed: a LocalCluster of worker processes by default, or the running
    scheduler at ``address`` to use the workers of many machines.

    Each worker runs one cell at a time (Dask's own threads: one per worker) with
    ``threads_per_worker`` torch threads. A worker that dies loses its cells; the
    scheduler runs them again on another worker (``retries`` times on a LocalCluster)
    and a cell lost more often is recorded as failed. An item that runs longer than its
    ``timeout`` (a cell: the experiment's ``unit_timeout`` per pending unit) is
    cancelled and its worker restarted (``Client.restart_workers``; a worker without a
    nanny is removed), and it is recorded as failed; the other items the restart
    interrupted run again. Workers read the data, the model cache and the run directory
    through their own file system: on several machines these paths must be shared (see
    docs/executors.md). With ``device = "cuda"`` and several GPUs, the LocalCluster has
    one worker per GPU, each seeing only its own; on a cluster, start one worker per GPU
    (e.g. ``dask-cuda-worker``).
    """

    name = "dask"
    Options = DaskOptions
    workers_option = "n_workers"

    @contextlib.contextmanager
    def client(self, gpus: list[int]):
        """A client of the scheduler at ``address``, or of a LocalCluster started (and
        closed) with it."""
        import logging

        import dask
        from distributed import Client, LocalCluster

        if self.options.address is not None:
            with Client(self.options.address) as client:
                yield client
            return
        threads = str(self.threads)
        with dask.config.set({"distributed.scheduler.allowed-failures": self.options.retries}), \
                LocalCluster(n_workers=self.pool_size(gpus), threads_per_worker=1,
                             processes=True, dashboard_address=None,
                             silence_logs=logging.ERROR,
                             env={name: threads for name in _workers.THREAD_VARIABLES}) \
                as cluster, Client(cluster) as client:
            if gpus:
                from ._dask_gpu import PinGpu

                client.register_plugin(PinGpu(gpus), name="robench-pin-gpu")
            yield client

    def map(self, fn, items):
        items = list(items)
        if not items:
            return
        with self.client(_workers.item_gpus(items)) as client:
            yield from _Tasks(client, fn, items, self.threads).outcomes()


class _Tasks:
    """The items of one ``map`` on a Dask client: submitted, watched for their time
    limits, and submitted again when the restart that stopped another item took them."""

    def __init__(self, client: Any, fn: Any, items: list[Any], threads: int):
        self.client, self.fn, self.items, self.threads = client, fn, items, threads
        self.futures: dict[Any, tuple[Any, int]] = {}  # key -> (future, item index)
        self.limits: dict[Any, float | None] = {}      # key -> the item's timeout
        self.restarted: set[str] = set()               # workers restarted for a timeout
        self.deadlines = _workers.Deadlines()

    def submit(self, index: int) -> Any:
        future = self.client.submit(_run_task, self.items[index], fn=self.fn,
                                    threads=self.threads, pure=False)
        self.futures[future.key] = (future, index)
        self.limits[future.key] = getattr(self.items[index], "timeout", None)
        return future

    def outcomes(self):
        """Yield ``(item, outcome)`` as the items finish, fail or run out of time."""
        import queue

        from distributed import wait

        started: queue.SimpleQueue = queue.SimpleQueue()
        self.client.subscribe_topic(STARTED_TOPIC, lambda event: started.put(event[1]))
        for index in range(len(self.items)):
            self.submit(index)
        try:
            while self.futures:
                timed = any(self.limits[key] for key in self.futures)
                try:
                    done = wait([f for f, _ in self.futures.values()],
                                timeout=_workers.POLL_S if timed else None,
                                return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    done = set()
                while not started.empty():
                    key, address = started.get()
                    if key in self.futures:
                        self.deadlines.start(key, address)
                for future in done:
                    yield from self.finished(future)
                for key, address in self.deadlines.overdue(self.limits):
                    yield self.stop(key, address)
        finally:
            self.client.unsubscribe_topic(STARTED_TOPIC)
            self.client.cancel([f for f, _ in self.futures.values()])

    def finished(self, future: Any):
        """The outcome of a finished future, or nothing when its item runs again."""
        from distributed.scheduler import KilledWorker

        _, index = self.futures.pop(future.key)
        self.deadlines.end(future.key)
        item = self.items[index]
        if future.status == "finished":
            yield item, future.result()
            return
        error = future.exception()
        if not isinstance(error, KilledWorker):
            raise error
        if error.last_worker.address in self.restarted:  # lost to a restart for a timeout
            self.submit(index)
            return
        yield item, _workers.lost_outcome(
            item, f"its Dask worker died while running it, more often than the scheduler "
                  f"allows ({error})")

    def stop(self, key: Any, address: str) -> tuple[Any, Any]:
        """Cancel the item ``key`` past its limit and restart the worker running it
        (which stops it); its failed outcome."""
        future, index = self.futures.pop(key)
        self.deadlines.end(key)
        self.client.cancel([future])
        self.restarted.add(address)
        self.client.restart_workers([address], raise_for_error=False)
        return self.items[index], _workers.timeout_outcome(self.items[index])
