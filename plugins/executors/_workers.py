"""What the out-of-process executors share: the worker count, the thread settings of a
worker, the GPUs to spread workers over, and the outcome of an item a worker lost."""

from __future__ import annotations

import os
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables that size the thread pools of torch's and numpy's libraries."""


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
