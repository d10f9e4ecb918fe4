"""Runs cells in a pool of worker processes on this machine."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections import Counter
from typing import Any, Literal

from . import _workers

_STARTED: Any = None
"""In a worker: the queue on which it reports each item it starts (index, pid)."""


@dataclasses.dataclass(frozen=True)
class ProcessesOptions:
    """Options of the ``processes`` executor."""

    max_workers: int | None = dataclasses.field(
        default=None, metadata={"minimum": 1, "help": "worker processes (default: the "
                                "usable cores divided by threads_per_worker; one per GPU "
                                "when the cells run on device = \"cuda\" and GPUs are "
                                "present)"})
    threads_per_worker: int = dataclasses.field(
        default=1, metadata={"minimum": 1, "help": "torch (and OpenMP/BLAS) threads of "
                             "each worker"})
    start_method: Literal["spawn", "forkserver"] = dataclasses.field(
        default="spawn", metadata={"help": "how workers start (torch does not survive "
                                   "fork)"})
    retries: int = dataclasses.field(
        default=1, metadata={"minimum": 0, "help": "times an item whose worker died is run "
                             "again on a fresh pool before it is recorded as failed"})


def _init_worker(threads: int, started: Any, gpus: Any) -> None:
    """Set up a fresh worker: its GPU (one of ``gpus``, if any), its threads, its queue."""
    global _STARTED
    _STARTED = started
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())
    _workers.limit_threads(threads)


def _run_item(fn: Any, item: Any, index: int) -> Any:
    """In a worker: report that item ``index`` starts here, then run it."""
    _STARTED.put((index, os.getpid()))
    return fn(item)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    except ProcessLookupError:
        pass


class ProcessesExecutor(_workers.WorkerPool):
    """A pool of worker processes on this machine (concurrent.futures), cells spread
    over them.

    Each worker starts fresh (spawn or forkserver, never fork) with
    ``threads_per_worker`` torch threads, so workers x threads stays within the cores.
    When the cells run on ``device = "cuda"`` and several GPUs are present, there is one
    worker per GPU, each seeing only its own (``CUDA_VISIBLE_DEVICES``); ``cuda:N``
    runs every worker on GPU N. A worker that dies (out of memory, a crash) loses the
    items it was running: they run again on a fresh pool, ``retries`` times, and are
    then recorded as failed. An item that runs longer than its ``timeout`` (a cell: the
    experiment's ``unit_timeout`` per pending unit) has its worker stopped and is
    recorded as failed; the other items it interrupted run again.
    """

    name = "processes"
    Options = ProcessesOptions
    workers_option = "max_workers"

    def map(self, fn, items):
        items = list(items)
        gpus = _workers.item_gpus(items)
        deaths: Counter[int] = Counter()
        todo = list(range(len(items)))
        while todo:
            todo = yield from self._round(fn, items, todo, deaths, gpus)

    def _round(self, fn, items, todo, deaths, gpus):
        """Run the items ``todo`` (indices) on a fresh pool until they finish or the
        pool breaks; yield the finished ones and return those to run again."""
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        context = multiprocessing.get_context(self.options.start_method)
        started = context.SimpleQueue()
        workers = min(self.pool_size(gpus), len(todo))
        gpu_queue = None
        if gpus:
            gpu_queue = context.SimpleQueue()
            for k in range(workers):
                gpu_queue.put(gpus[k % len(gpus)])
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                   initargs=(self.options.threads_per_worker, started,
                                             gpu_queue))
        futures = {pool.submit(_run_item, fn, items[i], i): i for i in todo}
        timeouts = {i: getattr(items[i], "timeout", None) for i in todo}
        deadlines = _workers.Deadlines()
        again: list[int] = []
        any_started = False
        try:
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED,
                               timeout=_workers.POLL_S if any(timeouts.values()) else None)
                while not started.empty():
                    deadlines.start(*started.get())
                    any_started = True
                broken = []
                for future in done:
                    index = futures.pop(future)
                    error = future.exception()
                    if error is None:
                        deadlines.end(index)
                        yield items[index], future.result()
                    elif isinstance(error, BrokenProcessPool):
                        broken.append(index)
                    else:
                        raise error
                for index in broken:
                    outcome = self._broken(items, index, deadlines, deaths)
                    if outcome is None:
                        again.append(index)
                    else:
                        yield items[index], outcome
                    deadlines.end(index)
                for _, pid in deadlines.overdue(timeouts):
                    _kill(pid)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for pid, _ in deadlines.running.values():
                _kill(pid)
        if again and not any_started:
            raise RuntimeError("the worker processes died before running any item "
                               "(see the errors above)")
        return again

    def _broken(self, items, index, deadlines, deaths):
        """The outcome of item ``index`` whose pool broke, or None to run it again.

        An item stopped for its timeout fails; an item that was running when a worker
        died on its own is charged one death and fails past ``retries``; an item that
        had not started, or that a timeout of another item interrupted, runs again.
        """
        if index in deadlines.stopped:
            return _workers.timeout_outcome(items[index])
        if index not in deadlines.running or deadlines.stopped:
            return None
        deaths[index] += 1
        if deaths[index] > self.options.retries:
            return _workers.lost_outcome(
                items[index], f"its worker process died {deaths[index]} times while "
                              "running it (out of memory or a crash)")
        return None
