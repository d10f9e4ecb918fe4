"""Runs cells in a pool of worker processes on this machine."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections import Counter
from typing import Any, Literal

from robench import Executor

from . import _workers

POLL_S = 0.5
"""How often the parent looks for items that ran past their timeout, in seconds."""

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


class ProcessesExecutor(Executor):
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

    @property
    def threads(self) -> int:
        """torch threads of each worker (``threads_per_worker``): the thread count of
        every cell unless ``[experiment] threads`` says otherwise."""
        return self.options.threads_per_worker

    @property
    def workers(self) -> int:
        """Worker processes on the CPU: the option, else as many as fit the cores."""
        return self.options.max_workers or _workers.default_workers(
            self.options.threads_per_worker)

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
        workers = min(_workers.pool_size(self.options.max_workers, gpus, self.workers),
                      len(todo))
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
        running: dict[int, tuple[int, float]] = {}  # index -> (pid, start)
        stopped: set[int] = set()
        again: list[int] = []
        any_started = False
        try:
            while futures:
                done, _ = wait(futures, timeout=POLL_S if any(timeouts.values()) else None,
                               return_when=FIRST_COMPLETED)
                while not started.empty():
                    index, pid = started.get()
                    running[index] = (pid, time.monotonic())
                    any_started = True
                broken = []
                for future in done:
                    index = futures.pop(future)
                    error = future.exception()
                    if error is None:
                        running.pop(index, None)
                        yield items[index], future.result()
                    elif isinstance(error, BrokenProcessPool):
                        broken.append(index)
                    else:
                        raise error
                for index in broken:
                    outcome = self._broken(items, index, running, stopped, timeouts, deaths)
                    if outcome is None:
                        again.append(index)
                    else:
                        yield items[index], outcome
                    running.pop(index, None)
                now = time.monotonic()
                for index, (pid, start) in running.items():
                    limit = timeouts[index]
                    if limit is not None and index not in stopped and now - start > limit:
                        stopped.add(index)
                        _kill(pid)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for pid, _ in running.values():
                _kill(pid)
        if again and not any_started:
            raise RuntimeError("the worker processes died before running any item "
                               "(see the errors above)")
        return again

    def _broken(self, items, index, running, stopped, timeouts, deaths):
        """The outcome of item ``index`` whose pool broke, or None to run it again.

        An item stopped for its timeout fails; an item that was running when a worker
        died on its own is charged one death and fails past ``retries``; an item that
        had not started, or that a timeout of another item interrupted, runs again.
        """
        if index in stopped:
            return _workers.lost_outcome(
                items[index], f"stopped after its time limit of {timeouts[index]:g} s")
        if index not in running or stopped:
            return None
        deaths[index] += 1
        if deaths[index] > self.options.retries:
            return _workers.lost_outcome(
                items[index], f"its worker process died {deaths[index]} times while "
                              "running it (out of memory or a crash)")
        return None
