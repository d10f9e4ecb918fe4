"""Typed component options: a frozen dataclass per component, filled from TOML.

A component declares ``Options`` as a frozen dataclass; :func:`parse_options` turns the
user's mapping into an instance, rejecting unknown keys (with the closest valid name)
and values of the wrong type. Float fields accept fractions written as strings
(``"8/255"``), as experiment files often state budgets that way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from fractions import Fraction
from typing import Any

from .errors import ConfigError, did_you_mean


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Options of a component that takes none."""


def parse_number(value: Any, key: str = "value") -> float:
    """Parse ``0.1``, ``3`` or a fraction string such as ``"8/255"`` into a float."""
    if isinstance(value, bool):
        raise ConfigError(f"expected a number, got {value!r}", key=key)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            pass
    raise ConfigError(f"expected a number or a fraction such as '8/255', got {value!r}", key=key)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where needed."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", key=key)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"expected one of {list(args)}, got {value!r}"
                              + did_you_mean(value, map(str, args)), key=key)
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {value!r}", key=key)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"expected {len(args)} values, got {len(value)}", key=key)
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", key=key)
        return dict(value)
    if tp is float:
        return parse_number(value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", key=key)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", key=key)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", key=key)
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"expected {tp.__name__}, got {value!r}", key=key)
    return value


def option_fields(options_cls: type) -> dict[str, dataclasses.Field]:
    """The fields of an options dataclass, by name."""
    return {f.name: f for f in dataclasses.fields(options_cls)}


def parse_options(options_cls: type, raw: dict[str, Any], *, key: str = "",
                  extra_keys: typing.Iterable[str] = ()) -> Any:
    """Build an ``options_cls`` instance from ``raw``, with user-facing errors.

    ``key`` prefixes every key path in error messages; ``extra_keys`` are names valid in
    the surrounding table (offered as close matches when a key is unknown).
    """
    fields = option_fields(options_cls)
    hints = typing.get_type_hints(options_cls)
    values = {}
    prefix = f"{key}." if key else ""
    for name, value in raw.items():
        if name not in fields:
            valid = sorted(fields) + sorted(extra_keys)
            raise ConfigError(f"unknown option{did_you_mean(name, valid)}; "
                              f"valid: {', '.join(valid) or 'none'}", key=prefix + name)
        values[name] = _coerce(value, hints[name], prefix + name)
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing required option(s): {', '.join(missing)}", key=key or None)
    try:
        return options_cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err), key=key or None) from None


def describe_options(options_cls: type) -> list[dict[str, Any]]:
    """A JSON-friendly schema of an options dataclass: name, type, default, help."""
    hints = typing.get_type_hints(options_cls)
    out = []
    for f in dataclasses.fields(options_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        if isinstance(default, tuple):
            default = list(default)
        out.append({"name": f.name, "type": _type_name(hints[f.name]), "default": default,
                    "required": f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING,
                    "help": f.metadata.get("help", "")})
    return out
