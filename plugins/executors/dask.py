"""Runs cells on Dask distributed: a cluster on this machine or an existing one."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from robench import Executor

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


def _run_task(item: Any, fn: Any, threads: int) -> Any:
    """On a worker: run one item with the executor's number of threads."""
    _workers.limit_threads(threads)
    return fn(item)


class DaskExecutor(Executor):
    """Dask distributed: a LocalCluster of worker processes by default, or the running
    scheduler at ``address`` to use the workers of many machines.

    Each worker runs one cell at a time (Dask's own threads: one per worker) with
    ``threads_per_worker`` torch threads. A worker that dies loses its cells; the
    scheduler runs them again on another worker (``retries`` times on a LocalCluster)
    and a cell lost more often is recorded as failed. Workers read the data, the model
    cache and the run directory through their own file system: on several machines
    these paths must be shared (see docs/executors.md). With ``device = "cuda"`` and
    several GPUs, the LocalCluster has one worker per GPU, each seeing only its own; on
    a cluster, start one worker per GPU (e.g. ``dask-cuda-worker``).
    """

    name = "dask"
    Options = DaskOptions

    @property
    def threads(self) -> int:
        """torch threads of each worker (``threads_per_worker``): the thread count of
        every cell unless ``[experiment] threads`` says otherwise."""
        return self.options.threads_per_worker

    @property
    def workers(self) -> int:
        """Workers of the LocalCluster on the CPU: the option, else as many as fit the
        cores."""
        return self.options.n_workers or _workers.default_workers(
            self.options.threads_per_worker)

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
        threads = str(self.options.threads_per_worker)
        workers = _workers.pool_size(self.options.n_workers, gpus, self.workers)
        with dask.config.set({"distributed.scheduler.allowed-failures": self.options.retries}), \
                LocalCluster(n_workers=workers, threads_per_worker=1,
                             processes=True, dashboard_address=None,
                             silence_logs=logging.ERROR,
                             env={name: threads for name in _workers.THREAD_VARIABLES}) \
                as cluster, Client(cluster) as client:
            if gpus:
                from ._dask_gpu import PinGpu

                client.register_plugin(PinGpu(gpus), name="robench-pin-gpu")
            yield client

    def map(self, fn, items):
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        items = list(items)
        if not items:
            return
        with self.client(_workers.item_gpus(items)) as client:
            futures = client.map(_run_task, items, fn=fn,
                                 threads=self.options.threads_per_worker, pure=False)
            index = {future.key: i for i, future in enumerate(futures)}
            try:
                for future in as_completed(futures):
                    item = items[index[future.key]]
                    if future.status != "error":
                        yield item, future.result()
                        continue
                    error = future.exception()
                    if not isinstance(error, KilledWorker):
                        raise error
                    yield item, _workers.lost_outcome(
                        item, f"its Dask worker died while running it, more often than "
                              f"the scheduler allows ({error})")
            finally:
                client.cancel(futures)
