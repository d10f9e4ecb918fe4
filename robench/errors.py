"""Exceptions robench raises for bad input.

Every error a user can cause by editing an experiment file or installing a plugin is
one of these; the CLI prints them as one line and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RobenchError(Exception):
    """Base class of the errors robench reports to users (no traceback shown)."""


class ConfigError(RobenchError):
    """An experiment file (or an options mapping) is invalid.

    The message names the file, the key path (``attacks[1].steps``), what was expected
    and, where one exists, the closest valid name.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None):
        self.file, self.key, self.line, self.reason = file, key, line, message
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        if key:
            where += f"{key}: "
        super().__init__(where + message)


class PluginError(RobenchError):
    """A plugin is broken or two plugins claim the same component name."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
