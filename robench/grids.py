"""Grids in experiment files: one model, defense stack or attack per value.

An option written ``{ grid = [v1, v2, ...] }`` in a ``[[models]]`` entry, in an entry of a
``[defenses]`` stack or in an ``[[attacks]]`` entry (also inside a table option such as
``training`` or ``attack_options``) expands that model, stack or attack into one per
value. Several grids in one model, stack or attack expand into their cross-product, the
first grid varying slowest. Options such as ``hidden``, ``mean`` or ``std`` take lists
already, so a plain list never means a grid: a table whose only key is ``grid`` does.

Labels: an expansion is labelled with the entry's label followed, for each grid in file
order, by ``_KEY_VALUE``: ``l2_coefficient_0.001``, where KEY is the option's own name and
VALUE the value as TOML writes it (a list's items joined by ``x``: ``mlp_hidden_64x64``).
A grid written as a table, ``{ grid = { NAME = VALUE, ... } }``, names its values: the
label gets ``_NAME`` instead (``lambda_1e-1.0``). Values that cannot be part of a label
(``"8/255"``, tables) must be named this way. Derived labels obey the label rules.

Importing this module does not import torch.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

GRID_KEY = "grid"
"""The only key of a table that stands for a grid of values."""

MAX_EXPANSIONS = 1_000
"""Most models, stacks or attacks one entry may expand into (a larger grid is almost
surely a typo)."""

LIST_JOIN = "x"
"""Joins the items of a list value in a label (``hidden = [64, 64]`` -> ``64x64``)."""

PART_JOIN = "_"
"""Joins an entry's label, each grid's option name and its value."""

NOT_A_GRID = {
    "models": ("name", "model", "defenses"),
    "defenses": ("defense",),
    "attacks": ("name", "attack", "library", "source", "epsilons"),
}
"""Keys of each section that choose what an entry *is* (or already sweep), not an
option: they cannot hold a grid."""

Error = Callable[[str, str], Exception]
"""Builds the exception of a problem at a key path: ``error(key, message)``."""

LabelProblem = Callable[[str], "str | None"]
"""Why a string is not a usable label, or None."""


@dataclasses.dataclass(frozen=True)
class Alias:
    """An expanded entry's key path (``models[3]``, ``defenses.l2_coefficient_0.1``) and
    the path of the entry it came from in the file, for error messages."""

    expanded: str
    original: str
    label: str | None  # the expansion's label; None for an entry that only moved

    def rewrite(self, key: str) -> str | None:
        """``key`` with the expanded prefix replaced by the original one, or None when
        ``key`` is not below this entry."""
        if key == self.expanded or key.startswith((self.expanded + ".", self.expanded + "[")):
            return self.original + key[len(self.expanded):]
        return None


def is_grid(value: Any) -> bool:
    """Whether ``value`` is a grid marker: a table whose only key is ``grid``."""
    return isinstance(value, dict) and list(value) == [GRID_KEY]


def _markers(value: Any, keys: tuple, key: str, in_list: bool = False
             ) -> Iterator[tuple[tuple, str, bool]]:
    """Every grid marker below ``value``: its keys from the entry, its key path and
    whether it sits inside a list (where a grid has no meaning)."""
    if is_grid(value):
        yield keys, key, in_list
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _markers(item, (*keys, name), f"{key}.{name}", in_list)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _markers(item, (*keys, i), f"{key}[{i}]", True)


def find_grids(value: Any, key: str) -> list[str]:
    """The key paths of every grid marker below ``value`` (at key path ``key``)."""
    return [where for _, where, _ in _markers(value, (), key)]


def _kind(value: Any) -> str:
    """The TOML kind of a value: grid values must all be of one kind."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__  # dates and times


def value_text(value: Any) -> str | None:
    """A grid value as a label part, or None when it has no short form (a table, a
    non-finite number)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, list):
        items = [value_text(v) for v in value]
        return None if None in items else LIST_JOIN.join(items)  # type: ignore[arg-type]
    return None


def _choices(marker: dict, key: str, leaf: str, error: Error, label_problem: LabelProblem
             ) -> list[tuple[str, Any]]:
    """(label part, value) of each value of one grid."""
    grid = marker[GRID_KEY]
    where = f"{key}.{GRID_KEY}"
    if isinstance(grid, dict):
        named = [(str(name), value) for name, value in grid.items()]
    elif isinstance(grid, list):
        named = []
        for value in grid:
            text = value_text(value)
            if text is None:
                raise error(where, f"the value {value!r} has no short form for a label; "
                                   f"name the values: grid = {{ NAME = VALUE, ... }}")
            named.append((f"{leaf}{PART_JOIN}{text}", value))
    else:
        raise error(where, f"expected a non-empty list of values (or a table naming them), "
                           f"got {grid!r}")
    if not named:
        raise error(where, "the grid is empty")
    kinds = sorted({_kind(value) for _, value in named})
    if len(kinds) > 1:
        raise error(where, f"the values of a grid must be of one kind, got {', '.join(kinds)}")
    parts = [part for part, _ in named]
    if len(set(parts)) != len(parts):
        twice = next(p for p in parts if parts.count(p) > 1)
        raise error(where, f"two values give the label part {twice!r}; name the values: "
                           f"grid = {{ NAME = VALUE, ... }}")
    for part, _ in named:
        problem = label_problem(part)
        if problem:
            raise error(where, f"the label part {part!r} is unusable ({problem}); name the "
                               f"values: grid = {{ NAME = VALUE, ... }}")
    return named


def expand_entries(tables: list[dict], key: str, label: Any, label_key: str, section: str,
                   error: Error, label_problem: LabelProblem
                   ) -> list[tuple[str, list[dict]]] | None:
    """Expand the grids of one model, stack or attack (``tables``: its entry, or the
    entries of a stack) into ``(label, tables)`` per combination; None when it has no
    grid. ``key`` is the entry's key path, ``label`` its label (at ``label_key``)."""
    grids = []
    for j, table in enumerate(tables):
        base = f"{key}[{j}]" if section == "defenses" else key
        for keys, where, in_list in _markers(table, (), base):
            if not keys:
                raise error(where, "a grid sweeps an option: write OPTION = { grid = [...] }")
            if in_list:
                raise error(where, "a grid cannot sit inside a list; put it around the "
                                   "whole option: OPTION = { grid = [...] }")
            if keys[0] in NOT_A_GRID[section]:
                raise error(where, f"{keys[0]!r} cannot be a grid (grids sweep options); "
                                   f"write one entry per value")
            grids.append((j, keys, where))
    if not grids:
        return None
    problem = label_problem(label)
    if problem:
        raise error(label_key, problem)
    choices = [_choices(_get(tables[j], keys), where, str(keys[-1]), error, label_problem)
               for j, keys, where in grids]
    count = math.prod(len(c) for c in choices)
    if count > MAX_EXPANSIONS:
        raise error(grids[0][2], f"the grids of this entry make {count:,} combinations; "
                                 f"at most {MAX_EXPANSIONS:,}")
    out = []
    for combination in itertools.product(*choices):
        expanded = copy.deepcopy(tables)
        for (j, keys, _), (_, value) in zip(grids, combination):
            _get(expanded[j], keys[:-1])[keys[-1]] = copy.deepcopy(value)
        name = PART_JOIN.join([label, *(part for part, _ in combination)])
        problem = label_problem(name)
        if problem:
            raise error(grids[0][2], f"the expanded label {name!r} is unusable ({problem}); "
                                     f"shorten the label or name the grid's values")
        out.append((name, expanded))
    return out


def _get(table: dict, keys: tuple) -> Any:
    for name in keys:
        table = table[name]
    return table
