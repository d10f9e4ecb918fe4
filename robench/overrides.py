"""Overrides of experiment-file values: ``robench run FILE -o KEY=VALUE``.

KEY is a key path written as robench's error messages write it: table keys joined by
dots and ``[N]`` for the N-th entry (from 0) of an array of tables, the entry as it stands
in the file (before any grid expands it): ``training.epochs``, ``experiment.seeds``,
``models[0].hidden``, ``defenses.l2[0].coefficient``, ``attacks[1].steps``. A key that
contains a dot is quoted: ``defenses."lambda_1e-1.0"[0].coefficient``. VALUE is read as a
TOML value (``3``, ``[0, 1]``, ``{ grid = [1, 2] }``, ``"cuda:0"``); anything that is
not one is taken as a string (``cuda:0``, ``8/255``). Missing tables on the way are
created; an index must name an existing entry.

Overrides apply before validation, so an invalid value is reported like one in the file,
naming its key and the override it came from; the overridden mapping is the run's
recorded configuration (and its hash), so cache keys see the new values.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError

OVERRIDE_FLAG = "-o"
"""The command-line flag of an override (also named in error messages)."""

_SEGMENT = re.compile(r'(?:(?P<bare>[A-Za-z0-9_+-]+)|"(?P<quoted>[^"\\]+)")'
                      r'(?P<indexes>(?:\[\d+\])*)')


@dataclasses.dataclass(frozen=True)
class Override:
    """One override: the key path (``models[0].hidden``), its parts (names and indexes),
    the value, and where it came from (``-o KEY=VALUE``, for error messages)."""

    key: str
    parts: tuple[str | int, ...]
    value: Any
    source: str

    def touches(self, key: str) -> bool:
        """Whether a problem at ``key`` concerns this override's value (the same key, a
        key below it, or a table holding it)."""
        return any(a == b or a.startswith((b + ".", b + "["))
                   for a, b in ((key, self.key), (self.key, key)) if b)


def parse_key(key: str) -> tuple[str | int, ...]:
    """The parts of a key path: names and indexes (``a.b[0].c`` -> ``a, b, 0, c``)."""
    parts: list[str | int] = []
    for segment in _split_quoted(key):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise ConfigError(f"expected a key path such as training.epochs or "
                              f"models[0].hidden, got {key!r}", key=OVERRIDE_FLAG)
        parts.append(match["bare"] or match["quoted"])
        parts += [int(n) for n in re.findall(r"\d+", match["indexes"])]
    return tuple(parts)


def _split_quoted(key: str) -> list[str]:
    """Split at the dots outside double quotes."""
    segments, current, quoted = [], "", False
    for char in key:
        if char == '"':
            quoted = not quoted
        if char == "." and not quoted:
            segments.append(current)
            current = ""
        else:
            current += char
    return [*segments, current]


def key_text(parts: tuple[str | int, ...]) -> str:
    """A key path as error messages write it (no quotes)."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_value(text: str) -> Any:
    """``text`` read as a TOML value, else the string itself."""
    try:
        parsed = tomllib.loads(f"value = {text}")
    except (tomllib.TOMLDecodeError, RecursionError):
        return text
    return parsed["value"] if list(parsed) == ["value"] else text


def from_command_line(text: str) -> Override:
    """An override written ``KEY=VALUE`` on the command line."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"expected KEY=VALUE such as training.epochs=3, got {text!r}",
                          key=OVERRIDE_FLAG)
    parts = parse_key(key.strip())
    return Override(key_text(parts), parts, parse_value(value.strip()),
                    f"{OVERRIDE_FLAG} {text}")


def from_mapping(overrides: Mapping[str, Any]) -> list[Override]:
    """Overrides given as ``{KEY: value}`` (the Python API): values are used as given."""
    out = []
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise ConfigError(f"expected key paths (strings), got {key!r}", key="overrides")
        parts = parse_key(key)
        out.append(Override(key_text(parts), parts, value, f"overrides[{json.dumps(key)}]"))
    return out


def apply(raw: dict[str, Any], overrides: Iterable[Override], *, file: str | None = None
          ) -> dict[str, Any]:
    """A copy of the parsed file ``raw`` with every override applied in order."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        target: Any = raw
        for depth, part in enumerate(override.parts):
            last = depth == len(override.parts) - 1
            here = key_text(override.parts[:depth]) or "the file"
            if isinstance(part, int):
                if not isinstance(target, list):
                    raise _error(override, file, f"{here} is not an array of tables")
                if part >= len(target):
                    raise _error(override, file, f"{here} has {len(target)} entries; an "
                                                 f"override can change existing ones only")
            elif not isinstance(target, dict):
                raise _error(override, file, f"{here} is not a table"
                                             + (" (entries are [N])" if isinstance(target, list)
                                                else ""))
            if last:
                target[part] = copy.deepcopy(override.value)
            else:
                if isinstance(part, str) and part not in target:
                    target[part] = {}  # a table the file leaves out
                target = target[part]
    return raw


def _error(override: Override, file: str | None, message: str) -> ConfigError:
    return ConfigError(f"{message} (from {override.source})", file=file, key=override.key)
