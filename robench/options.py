"""Typed component options: a frozen dataclass per component, filled from TOML.

A component declares ``Options`` as a frozen dataclass; :func:`parse_options` turns the
user's mapping into an instance, rejecting unknown keys (with the closest valid name)
and values of the wrong type. Float fields accept fractions written as strings
(``"8/255"``), as experiment files often state budgets that way. Every number must be
finite; a field's metadata may relax or tighten that::

    eps: float = dataclasses.field(default=0.1, metadata={"minimum": 0})
    norm: float = dataclasses.field(default=2.0, metadata={"allow_inf": True})
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from fractions import Fraction
from typing import Any

from .errors import ConfigError, did_you_mean


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Options of a component that takes none."""


def parse_number(value: Any, key: str = "value", *, allow_inf: bool = False) -> float:
    """Parse ``0.1``, ``3`` or a fraction string such as ``"8/255"`` into a finite float.

    NaN is always refused; infinity only with ``allow_inf`` (a field whose metadata sets
    ``allow_inf``, such as a norm order).
    """
    if isinstance(value, bool):
        raise ConfigError(f"expected a number, got {value!r}", key=key)
    number = None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(f"number out of range: {value!r}", key=key) from None
    elif isinstance(value, str):
        try:
            number = float(Fraction(value.replace(" ", "")))
        except OverflowError:
            raise ConfigError(f"number out of range: {value!r}", key=key) from None
        except (ValueError, ZeroDivisionError):
            pass
    if number is None:
        raise ConfigError(f"expected a number or a fraction such as '8/255', got {value!r}",
                          key=key)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise ConfigError(f"expected a finite number, got {value!r}", key=key)
    return number


def _check_finite(value: Any, key: str, allow_inf: bool) -> None:
    """Refuse NaN (and infinity unless ``allow_inf``) anywhere inside ``value``."""
    if isinstance(value, float) and (math.isnan(value) or (math.isinf(value)
                                                           and not allow_inf)):
        raise ConfigError(f"expected a finite number, got {value!r}", key=key)
    if isinstance(value, dict):
        for name, item in value.items():
            _check_finite(item, f"{key}.{name}", allow_inf)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{key}[{i}]", allow_inf)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, allow_inf: bool = False) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where needed.

    Numbers must be finite (infinity passes with ``allow_inf``), at any depth.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        _check_finite(value, key, allow_inf)
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, allow_inf)
            except ConfigError:
                continue
        _check_finite(value, key, allow_inf)
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
            return tuple(_coerce(v, a, f"{key}[{i}]", allow_inf)
                         for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{key}[{i}]", allow_inf) for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", key=key)
        _check_finite(value, key, allow_inf)
        return dict(value)
    if tp is float:
        return parse_number(value, key, allow_inf=allow_inf)
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
        field = fields[name]
        values[name] = _coerce(value, hints[name], prefix + name,
                               bool(field.metadata.get("allow_inf")))
        _check_bounds(values[name], field, prefix + name)
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing required option(s): {', '.join(missing)}", key=key or None)
    try:
        return options_cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err), key=_named_field(str(err), fields, prefix)
                          or key or None) from None
    except Exception as err:  # a plugin's own check failed in an unforeseen way
        raise ConfigError(f"invalid options ({type(err).__name__}: {err})",
                          key=key or None) from None


def _named_field(message: str, fields: typing.Iterable[str], prefix: str) -> str | None:
    """The key path of the field a check's message starts with (``"lr must be ..."``)."""
    first = message.split(" ", 1)[0]
    return prefix + first if first in fields else None


def _check_bounds(value: Any, field: dataclasses.Field, key: str) -> None:
    """Apply a field's ``minimum`` / ``maximum`` metadata (inclusive) to a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = field.metadata.get("minimum"), field.metadata.get("maximum")
    if low is not None and value < low:
        raise ConfigError(f"expected a value >= {low}, got {value!r}", key=key)
    if high is not None and value > high:
        raise ConfigError(f"expected a value <= {high}, got {value!r}", key=key)


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
