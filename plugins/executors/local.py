"""Runs cells one after another in this process."""

from __future__ import annotations

from robench import Executor


class LocalExecutor(Executor):
    """Sequential, in-process execution (the default): simple, deterministic, and the
    right choice for one CPU or one GPU. Its one worker uses every core (unless
    ``[experiment] threads`` says otherwise). ``[experiment] unit_timeout`` is not
    enforced here (a unit cannot be stopped safely inside this process); executors
    that run units in worker processes enforce it."""

    name = "local"
    workers = 1

    def map(self, fn, items):
        for item in items:
            yield item, fn(item)
