"""Runs cells one after another in this process."""

from __future__ import annotations

from robench import Executor


class LocalExecutor(Executor):
    """Sequential, in-process execution (the default): simple, deterministic, and the
    right choice for one CPU or one GPU."""

    name = "local"

    def map(self, fn, items):
        for item in items:
            yield item, fn(item)
