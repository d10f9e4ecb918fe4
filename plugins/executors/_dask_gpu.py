"""The Dask worker plugin that gives each LocalCluster worker one GPU (imported only when
the ``dask`` executor starts a cluster on a machine with several GPUs)."""

from __future__ import annotations

import os
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class PinGpu(WorkerPlugin):
    """Gives the LocalCluster worker named ``k`` GPU ``gpus[k]`` alone, set before the
    worker's first task initialises CUDA."""

    def __init__(self, gpus: list[int]):
        self.gpus = gpus

    def setup(self, worker: Any) -> None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(self.gpus[int(worker.name) % len(self.gpus)])
