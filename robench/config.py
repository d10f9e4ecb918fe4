"""Experiment files: TOML -> frozen, validated :class:`ExperimentSpec`.

Every mistake a user can make in an experiment file (unknown section or key, unknown
plugin, wrong type, impossible value) raises :class:`robench.ConfigError` naming the
file, the line where it can be found, the key path, what was expected and the closest
valid name. Validation imports plugin modules but never torch.

The format is documented in README.md ("Experiment files"); in short::

    [experiment]  name, seeds, device, output, model_cache, executor,
                  executor_options = {...}, threads, unit_timeout, on_version_change
    [data]        dataset, root, train_subset, test_subset, + the dataset's options
    [training]    optimizer, lr, momentum, epochs, batch_size, lr_milestones, ...
    [[models]]    name, model (plugin; defaults to name), training = {...},
                  defenses = [stack labels] (default: all), + options
    [defenses]    LABEL = [ {defense = "weight_decay", ...}, ... ]   (a stack each)
    [[attacks]]   name, attack (plugin), epsilons, samples, targets, source,
                  examples, + the attack's options
    [metrics]     use = [...], and [metrics.NAME] tables of options
    [report]      formats = ["html", "md"], eps = ["8/255", ...] (budgets the report
                  highlights), reporters = [...] (default: every installed reporter)

An option written ``{ grid = [...] }`` in a model, stack or attack expands it into one per
value (:mod:`robench.grids`); ``model = "import:package.module:factory"`` is short for the
``import`` model with that target; overrides (``-o KEY=VALUE``, :mod:`robench.overrides`)
change values before validation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from .components import Attack, Component, ThreatModel
from .errors import ConfigError, PluginError, did_you_mean
from .grids import NOT_A_GRID, Alias, expand_entries, find_grids
from .options import option_fields, parse_number, parse_options
from .overrides import Override, from_mapping
from .overrides import apply as apply_overrides
from .plugins import Registry, get_registry

SECTIONS = ("experiment", "data", "training", "models", "defenses", "attacks", "metrics",
            "report")

VERSION_CHANGE_POLICIES = ("recompute", "keep")
"""Values of ``[experiment] on_version_change``: what a rerun does with work whose key
changed only in component or package versions."""

MAX_BUDGETS = 10_000
"""Most budgets one sweep may hold (a larger grid is almost surely a typo)."""

LABEL_MAX = 64
"""Longest model, defense, attack or experiment label: ids such as
``MODEL--DEFENSE--sSEED--ATTACK`` plus a file suffix must fit one file name (255 bytes)."""

ID_SEPARATOR = "--"
"""Joins labels into cell and unit ids, hence forbidden inside a label."""

NAME_MAX, PATH_MAX = 255, 4096
"""File name and path length limits (bytes) of the common file systems."""

IMPORT_PREFIX, IMPORT_MODEL = "import:", "import"
"""``model = "import:package.module:factory"`` is short for the model plugin ``import``
with ``target = "package.module:factory"``."""

DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"
"""Device strings accepted by ``[experiment] device`` and ``--device``."""


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
    """A plugin component chosen in the file: its kind, name and parsed options."""

    kind: str
    name: str
    options: Any
    raw: dict[str, Any]

    def create(self, registry: Registry):
        """Instantiate the component with its parsed options."""
        return registry.get(self.kind, self.name)(self.options)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The ``[data]`` section: a dataset component plus host-level subsetting."""

    dataset: ComponentSpec
    root: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    """The ``[training]`` section (or a model's ``training`` override)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    epochs: int = 10
    batch_size: int = 128
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    augment: str = "none"

    def __post_init__(self):
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}"
                             + did_you_mean(self.optimizer, ["adam", "sgd"]))
        if self.augment not in ("none", "crop_flip"):
            raise ValueError(f"augment must be 'none' or 'crop_flip', got {self.augment!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {self.momentum}")
        if self.lr_gamma <= 0:
            raise ValueError(f"lr_gamma must be positive, got {self.lr_gamma}")
        if any(m < 0 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones must be >= 0, got {list(self.lr_milestones)}")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One ``[[models]]`` entry: a label, a model component, its training settings and,
    optionally, the defense stacks it is trained with (all of them by default)."""

    label: str
    component: ComponentSpec
    training: TrainingSpec
    raw_training: dict[str, Any]
    defenses: tuple[str, ...] | None = None  # stack labels to train; None = every stack


@dataclasses.dataclass(frozen=True)
class DefenseStack:
    """A named stack of defenses applied together (empty = undefended)."""

    label: str
    defenses: tuple[ComponentSpec, ...]


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One ``[[attacks]]`` entry: an attack component swept over ``epsilons``.

    ``samples``: attack the first N test inputs (None = all). ``targets``: None
    (untargeted), ``"all"`` (every other class per input), ``"random"`` (one random
    other class per input) or ``"cyclic"`` (the next class, ``(y + 1) mod k``).
    ``source``: ``"MODEL/DEFENSE"`` labels of the model the attack is crafted on (a
    transfer attack); None attacks each model itself. ``examples``: how many inputs to
    keep as artifacts for reports. How many inputs an attack processes at once is the
    attack's own option (``batch_size`` where it has one).
    """

    label: str
    component: ComponentSpec
    epsilons: tuple[float, ...]
    samples: int | None = None
    targets: str | None = None
    source: tuple[str, str] | None = None
    examples: int = 8


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    """The ``[report]`` section.

    ``formats``: the files rendered into the run directory (``"html"``, ``"md"``).
    ``eps``: budgets the report singles out (tables at these budgets), None = the
    reporters' own choice. ``reporters``: names of the reporter plugins whose sections
    the report holds, None = every installed reporter.
    """

    formats: tuple[str, ...] = ("html", "md")
    eps: tuple[float, ...] | None = None
    reporters: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment file.

    ``threads``: CPU threads the run may use (None = the library defaults).
    ``unit_timeout``: seconds one attack unit may run before it is stopped and recorded
    as failed (None = no limit; enforced where units run in worker processes).
    ``on_version_change``: what a rerun does with work whose key differs from the stored
    one only in component or package versions: ``recompute`` it, or ``keep`` its
    results (the record and the report say which versions produced them).
    """

    name: str
    file: str
    seeds: tuple[int, ...]
    device: str
    output: str
    model_cache: str | None
    executor: ComponentSpec
    data: DataSpec
    models: tuple[ModelSpec, ...]
    defenses: tuple[DefenseStack, ...]
    attacks: tuple[AttackSpec, ...]
    metrics: tuple[ComponentSpec, ...]
    report: ReportSpec
    raw: dict[str, Any]
    threads: int | None = None
    unit_timeout: float | None = None
    on_version_change: str = "recompute"
    overrides: tuple[tuple[str, Any], ...] = ()
    """The ``-o KEY=VALUE`` overrides applied to the file's values (key, value), in order."""

    @property
    def report_formats(self) -> tuple[str, ...]:
        """The report's file formats (``report.formats``)."""
        return self.report.formats

    @property
    def config_hash(self) -> str:
        return stable_hash(self.raw)


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short, stable hash of a JSON-able object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# --------------------------------------------------------------------------- parsing


class _Ctx:
    """Error context: the file and its text, for line numbers in messages."""

    def __init__(self, file: str, text: str, registry: Registry,
                 overrides: tuple[Override, ...] = ()):
        self.file, self.lines, self.registry = file, text.splitlines(), registry
        self.current = ""  # the entry being validated, named by unforeseen errors
        self.overrides = overrides
        self.aliases: list[Alias] = []  # expanded entries -> the entries of the file

    def error(self, key: str, message: str) -> ConfigError:
        """The error at ``key``: named as the file has it (an expanded grid entry by the
        entry it came from), with its line, or with the override that set it."""
        for alias in self.aliases:
            original = alias.rewrite(key)
            if original is not None:
                key = original
                if alias.label is not None:
                    message += f" (in the grid expansion {alias.label!r})"
                break
        override = next((o for o in reversed(self.overrides) if o.touches(key)), None)
        if override is not None:
            return ConfigError(f"{message} (from {override.source})", file=self.file, key=key)
        return ConfigError(message, file=self.file, key=key, line=self.find_line(key))

    def find_line(self, key: str) -> int | None:
        """Best-effort line number of a key path such as ``attacks[1].steps``."""
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", key)
        if not parts:
            return None
        section = parts[0]
        index = int(parts[1][1:-1]) if len(parts) > 1 and parts[1].startswith("[") else None
        header = re.compile(rf"^\s*\[\[?\s*{re.escape(section)}(\.[^\]]*)?\s*\]\]?")
        start, seen = None, -1
        for i, line in enumerate(self.lines):
            if header.match(line):
                seen += 1
                if index is None or seen == index:
                    start = i
                    break
        leaf = [p for p in parts[1:] if not p.startswith("[")]
        if start is None:
            if not leaf:
                return None
            start = 0
        if not leaf:
            return start + 1
        pattern = re.compile(rf"(^|[\s{{,]){re.escape(leaf[-1])}\s*=")
        for i in range(start, len(self.lines)):
            if i > start and self.lines[i].lstrip().startswith("[") and \
                    not self.lines[i].lstrip().startswith(("[[" + section, "[" + section)):
                break
            if pattern.search(self.lines[i]):
                return i + 1
        return start + 1

    def check_keys(self, table: dict, allowed: tuple[str, ...], key: str) -> None:
        for name in table:
            if name not in allowed:
                raise self.error(f"{key}.{name}" if key else name,
                                 f"unknown key{did_you_mean(name, allowed)}; "
                                 f"valid: {', '.join(allowed)}")

    def table(self, raw: dict, name: str, key: str, required: bool = False) -> dict:
        value = raw.get(name, {} if not required else None)
        if value is None:
            raise self.error(key, "missing section")
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {type(value).__name__}")
        return value

    def component(self, kind: str, name: Any, options: dict, key: str,
                  host_keys: tuple[str, ...] = (), options_key: str | None = None
                  ) -> ComponentSpec:
        """Look ``name`` up among the ``kind`` plugins and parse its ``options``; errors
        about the name carry ``key``, errors about an option ``options_key.OPTION``
        (default: the table holding ``key``)."""
        if not isinstance(name, str):
            raise self.error(key, f"expected the name of a {kind} plugin (a string), got {name!r}")
        try:
            cls = self.registry.get(kind, name)
        except PluginError as err:
            raise self.error(key, str(err)) from None
        shadowed = sorted(set(option_fields(cls.Options)) & set(host_keys))
        if shadowed:
            raise self.error(key, f"{kind} {name!r} has option(s) {shadowed} that the host's "
                                  f"keys of the same name shadow in experiment files; the "
                                  f"plugin must rename them")
        where = options_key or key.rsplit('.', 1)[0]
        try:
            parsed = parse_options(cls.Options, options, extra_keys=host_keys)
        except ConfigError as err:
            sub = f"{where}.{err.key}" if err.key else key
            raise self.error(sub, f"{kind} {name!r}: {err.reason}") from None
        self.nested_components(cls, parsed, where)
        return ComponentSpec(kind, name, parsed, dict(options))

    def nested_components(self, cls: type[Component], parsed: Any, where: str) -> None:
        """Validate the components an options instance names.

        An option whose field metadata holds ``component = KIND`` names a plugin of that
        kind (adversarial training's ``attack``); metadata ``options_field`` names the
        option holding that plugin's options (``attack_options``).
        """
        for field in dataclasses.fields(cls.Options):
            kind = field.metadata.get("component")
            if kind is None:
                continue
            options_field = field.metadata.get("options_field")
            options = getattr(parsed, options_field) if options_field else {}
            self.component(kind, getattr(parsed, field.name), dict(options or {}),
                           f"{where}.{field.name}",
                           options_key=f"{where}.{options_field or field.name}")


def _typed(ctx: _Ctx, table: dict, name: str, types: type | tuple, key: str, default=None,
           what: str = ""):
    if name not in table:
        return default
    value = table[name]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ctx.error(f"{key}.{name}", f"expected {what or types}, got {value!r}")
    if not isinstance(value, types):
        raise ctx.error(f"{key}.{name}", f"expected {what or types}, got {value!r}")
    return value


def _positive_int(ctx, table, name, key, default=None):
    value = _typed(ctx, table, name, int, key, default, "a positive integer")
    if value is not None and value < 1:
        raise ctx.error(f"{key}.{name}", f"expected a positive integer, got {value}")
    return value


def parse_epsilons(ctx: _Ctx, value: Any, key: str) -> tuple[float, ...]:
    """A list of budgets, or ``{start, stop, num}`` / ``{start, stop, step}`` (inclusive).

    Values may be numbers or fraction strings (``"8/255"``). The result is ascending,
    without duplicates and non-negative.
    """
    def number(v, k):
        try:
            return parse_number(v, k)
        except ConfigError as err:
            raise ctx.error(k, err.reason) from None

    if isinstance(value, list):
        if len(value) > MAX_BUDGETS:
            raise ctx.error(key, f"{len(value):,} budgets exceed the limit of {MAX_BUDGETS:,} "
                                 f"per sweep")
        eps = [number(v, f"{key}[{i}]") for i, v in enumerate(value)]
    elif isinstance(value, dict):
        ctx.check_keys(value, ("start", "stop", "num", "step"), key)
        if "start" not in value or "stop" not in value:
            raise ctx.error(key, "a range needs 'start' and 'stop', and 'num' or 'step'")
        start, stop = number(value["start"], f"{key}.start"), number(value["stop"], f"{key}.stop")
        if ("num" in value) == ("step" in value):
            raise ctx.error(key, "give exactly one of 'num' (points) or 'step' (spacing)")
        if stop < start:
            raise ctx.error(key, f"stop ({stop}) is below start ({start})")
        if "num" in value:
            num = value["num"]
            if isinstance(num, bool) or not isinstance(num, int) or num < 1:
                raise ctx.error(f"{key}.num", f"expected a positive integer, got {num!r}")
            if num > MAX_BUDGETS:
                raise ctx.error(f"{key}.num", f"{num} budgets exceed the limit of "
                                              f"{MAX_BUDGETS:,} per sweep")
            eps = ([start + (stop - start) * i / (num - 1) for i in range(num)] if num > 1
                   else [start])
        else:
            step = number(value["step"], f"{key}.step")
            if step <= 0:
                raise ctx.error(f"{key}.step", f"expected a positive step, got {step}")
            points = (stop - start) / step + 1
            if not points <= MAX_BUDGETS:
                raise ctx.error(f"{key}.step", f"step {step!r} makes more than {MAX_BUDGETS:,} "
                                               f"budgets from {start} to {stop}")
            count = int(math.floor(points - 1 + 1e-9)) + 1
            eps = [start + step * i for i in range(count)]
    else:
        raise ctx.error(key, "expected a list of budgets or a range table "
                             "{start, stop, num} / {start, stop, step}")
    if not eps:
        raise ctx.error(key, "the sweep is empty")
    if any(not math.isfinite(e) or e < 0 for e in eps):
        raise ctx.error(key, f"budgets must be finite and >= 0, got {eps}")
    if any(b <= a for a, b in zip(eps, eps[1:])):
        raise ctx.error(key, "budgets must be strictly increasing")
    return tuple(eps)


def _parse_training(ctx: _Ctx, table: dict, key: str) -> TrainingSpec:
    try:
        return parse_options(TrainingSpec, table)
    except ConfigError as err:
        raise ctx.error(f"{key}.{err.key}" if err.key else key, err.reason) from None


def label_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a label (of the experiment, a model, a defense stack or an
    attack), or None."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
        return f"expected a label of letters, digits, '_', '.', '+' or '-', got {value!r}"
    if ID_SEPARATOR in value:
        return f"{value!r} contains {ID_SEPARATOR!r}, which joins labels into ids"
    if len(value) > LABEL_MAX:
        return f"label of {len(value)} characters; at most {LABEL_MAX}"
    if not value.strip("."):
        return f"{value!r} is not a usable label (it names a directory)"
    return None


def _label(ctx: _Ctx, value: Any, key: str) -> str:
    problem = label_problem(value)
    if problem:
        raise ctx.error(key, problem)
    return value


def _path(ctx: _Ctx, table: dict, name: str, key: str, default: str | None) -> str | None:
    """A path option: a non-empty string without NUL within the file system's limits."""
    value = _typed(ctx, table, name, str, key, default, "a path")
    if value is None:
        return None
    problem = path_problem(value)
    if problem:
        raise ctx.error(f"{key}.{name}", problem)
    return value


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a file or directory on common file systems, or None."""
    if not path:
        return "expected a path, got an empty string"
    if "\0" in path:
        return f"the path {path!r} contains a NUL character"
    encoded = os.fsencode(path)
    if len(encoded) > PATH_MAX:
        return f"the path is {len(encoded):,} bytes long; at most {PATH_MAX}"
    longest = max(os.fsencode(part) for part in Path(path).parts)
    if len(longest) > NAME_MAX:
        return f"a path component is {len(longest)} bytes long; at most {NAME_MAX}"
    return None


def directory_problem(path: str | Path) -> str | None:
    """Why robench cannot create or write the directory ``path``, or None (checked on
    the nearest existing ancestor)."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        return f"{str(path)!r} is a file, not a directory"
    existing = target if target.exists() else next(
        (p for p in target.absolute().parents if p.exists()), None)
    if existing is None or not existing.is_dir():
        return f"{str(existing)!r} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{str(existing)!r} is not writable"
    return None


def check_device(device: str, key: str, *, file: str | None = None) -> None:
    """Refuse a device string robench does not know (no torch import)."""
    if not isinstance(device, str) or not re.fullmatch(DEVICE_PATTERN, device):
        raise ConfigError(f"expected auto, cpu, cuda, cuda:N or mps, got {device!r}",
                          file=file, key=key)


def check_device_available(device: str, key: str = "device") -> None:
    """Refuse a device this machine lacks (imports torch: call it when a run starts)."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (index and int(index) >= count):
            raise ConfigError(f"{device!r} requested but this machine has "
                              f"{count} CUDA device(s); use cpu or auto", key=key)
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("'mps' requested but this machine has no MPS device; use cpu or "
                          "auto", key=key)


def check_paths(spec: ExperimentSpec, out: str | Path | None = None) -> None:
    """Refuse an output directory (``out``, else the spec's) or model cache robench
    could not write, before any work starts."""
    checks = [("--out" if out is not None else "experiment.output", out or spec.output)]
    if spec.model_cache:
        checks.append(("experiment.model_cache", spec.model_cache))
    for key, path in checks:
        problem = path_problem(str(path)) or directory_problem(path)
        if problem:
            raise ConfigError(problem, file=None if key == "--out" else spec.file, key=key)


def _parse_report(ctx: _Ctx, table: dict) -> ReportSpec:
    ctx.check_keys(table, ("formats", "eps", "reporters"), "report")
    formats = table.get("formats", list(ReportSpec.formats))
    if not isinstance(formats, list) or any(f not in ("html", "md") for f in formats):
        raise ctx.error("report.formats",
                        f"expected a list of \"html\" and \"md\", got {formats!r}")
    eps = (parse_epsilons(ctx, table["eps"], "report.eps") if "eps" in table else None)
    reporters = table.get("reporters")
    if reporters is not None:
        if not isinstance(reporters, list) or any(not isinstance(r, str) for r in reporters):
            raise ctx.error("report.reporters",
                            f"expected a list of reporter plugin names, got {reporters!r}")
        for i, name in enumerate(reporters):
            try:
                ctx.registry.get("reporter", name)
            except PluginError as err:
                raise ctx.error(f"report.reporters[{i}]", str(err)) from None
        if len(set(reporters)) != len(reporters):
            raise ctx.error("report.reporters", f"reporters repeat: {reporters}")
        reporters = tuple(reporters)
    return ReportSpec(formats=tuple(formats), eps=eps, reporters=reporters)


Overrides = Mapping[str, Any] | Iterable[Override] | None
"""Overrides of values of the file: ``{"training.epochs": 3}`` or parsed ``-o`` options
(see :mod:`robench.overrides`)."""


def parse_experiment(raw: dict[str, Any], *, file: str = "<experiment>", text: str = "",
                     registry: Registry | None = None,
                     overrides: Overrides = None) -> ExperimentSpec:
    """Validate a parsed TOML mapping, with ``overrides`` applied, into an
    :class:`ExperimentSpec` (whose ``raw`` holds the overridden mapping).

    Every problem is a :class:`ConfigError` naming the file and key, including the
    unforeseen ones (a plugin's check failing oddly, absurd nesting), which name the
    entry being validated; a problem with an overridden value names the override.
    """
    changes = tuple(from_mapping(overrides) if isinstance(overrides, Mapping)
                    else overrides or ())
    raw = apply_overrides(raw, changes, file=file)
    ctx = _Ctx(file, text, registry or get_registry(), changes)
    try:
        return dataclasses.replace(_parse_experiment(ctx, raw),
                                   overrides=tuple((o.key, o.value) for o in changes))
    except ConfigError:
        raise
    except RecursionError:
        raise ctx.error(ctx.current, "nested too deeply") from None
    except Exception as err:
        raise ctx.error(ctx.current, f"cannot validate ({type(err).__name__}: {err})") from None


def _entries(ctx: _Ctx, raw: dict, section: str) -> list[dict]:
    """The tables of an array-of-tables section such as ``[[models]]``."""
    entries = raw.get(section)
    if not isinstance(entries, list) or not entries:
        raise ctx.error(section, f"expected at least one [[{section}]] entry")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ctx.error(f"{section}[{i}]", f"expected a [[{section}]] table, got {entry!r}")
    return entries


def _expand(ctx: _Ctx, tables: list[dict], key: str, label: Any, label_key: str,
            section: str) -> list[tuple[str, list[dict]]] | None:
    """The grid expansions of one model, stack or attack, or None (no grid, or no
    label: validation reports the missing name or plugin)."""
    if label is None:
        return None
    return expand_entries(tables, key, label, label_key, section, ctx.error, label_problem)


def _expand_grids(ctx: _Ctx, raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its grids expanded (:mod:`robench.grids`); ``ctx`` learns which
    expanded entry came from which entry of the file. Malformed sections are left for
    validation to report."""
    for section, body in raw.items():
        if section not in NOT_A_GRID:
            for key in find_grids(body, section):
                raise ctx.error(key, "grids are allowed in [[models]] entries, [defenses] "
                                     "stacks and [[attacks]] entries only")
    raw = dict(raw)
    groups: dict[str, list[str]] = {}  # stack label -> the labels of its expansions
    stacks = raw.get("defenses")
    if isinstance(stacks, dict):
        expanded: dict[str, Any] = {}
        for label, stack in stacks.items():
            key = f"defenses.{label}"
            result = (_expand(ctx, stack, key, label, key, "defenses")
                      if isinstance(stack, list) and all(isinstance(d, dict) for d in stack)
                      else None)
            for name, tables in result or [(label, stack)]:
                if name in expanded or (result and name in stacks):
                    raise ctx.error(key, f"the defense stack label {name!r} is used twice "
                                         f"(once by a grid expansion)")
                expanded[name] = tables
                if result:
                    ctx.aliases.append(Alias(f"defenses.{name}", key, name))
            if result:
                groups[label] = [name for name, _ in result]
        raw["defenses"] = expanded
    for section in ("models", "attacks"):
        entries = raw.get(section)
        if not isinstance(entries, list):
            continue
        out: list[Any] = []
        for i, entry in enumerate(entries):
            key = f"{section}[{i}]"
            result = None
            if isinstance(entry, dict):
                result = _expand(ctx, [entry], key, _entry_label(section, entry),
                                 f"{key}.name", section)
            if result is None:
                if len(out) != i:
                    ctx.aliases.append(Alias(f"{section}[{len(out)}]", key, None))
                out.append(entry)
                continue
            for name, (table,) in result:
                ctx.aliases.append(Alias(f"{section}[{len(out)}]", key, name))
                if section == "models":
                    table["model"] = entry.get("model", entry["name"])
                out.append({**table, "name": name})
        if section == "models" and groups:
            out = [{**m, "defenses": [e for d in m["defenses"] for e in groups.get(d, [d])]}
                   if isinstance(m, dict) and isinstance(m.get("defenses"), list)
                   and all(isinstance(d, str) for d in m["defenses"]) else m for m in out]
        raw[section] = out
    return raw


def _model_component(ctx: _Ctx, entry: dict, label: str, key: str,
                     host: tuple[str, ...]) -> ComponentSpec:
    """The model plugin of a ``[[models]]`` entry and its options (the entry's other
    keys); ``model = "import:TARGET"`` stands for the import model with that target."""
    name = entry.get("model", label)
    options = {k: v for k, v in entry.items() if k not in host}
    if not (isinstance(name, str) and name.startswith(IMPORT_PREFIX)):
        return ctx.component("model", name, options, f"{key}.model", host)
    if "target" in options:
        raise ctx.error(f"{key}.target", f"the target is given twice: by model = {name!r} "
                                         f"and by target")
    options["target"] = name[len(IMPORT_PREFIX):]
    try:
        return ctx.component("model", IMPORT_MODEL, options, f"{key}.model", host)
    except ConfigError as err:
        if not (err.key or "").endswith(".target"):  # (a key as the file has it)
            raise
        raise ctx.error(f"{key}.model", err.reason) from None


def _entry_label(section: str, entry: dict) -> Any:
    """The label of a ``[[models]]`` or ``[[attacks]]`` entry (an attack's defaults to its
    plugin's name), as validation reads it."""
    if section == "models":
        return entry.get("name")
    component = entry.get("attack")
    if "library" in entry and isinstance(entry["library"], str) and isinstance(component, str):
        component = f"{entry['library']}.{component}"
    return entry.get("name", component)


def _parse_experiment(ctx: _Ctx, raw: dict[str, Any]) -> ExperimentSpec:
    registry, file = ctx.registry, ctx.file
    ctx.check_keys(raw, SECTIONS, "")
    original, raw = raw, _expand_grids(ctx, raw)
    ctx.current = "experiment"

    exp = ctx.table(raw, "experiment", "experiment")
    ctx.check_keys(exp, ("name", "seeds", "device", "output", "model_cache", "executor",
                         "executor_options", "threads", "unit_timeout", "on_version_change",
                         "description"),
                   "experiment")
    name = _label(ctx, exp.get("name", Path(file).stem), "experiment.name")
    seeds = exp.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or \
            any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ctx.error("experiment.seeds", f"expected a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ctx.error("experiment.seeds", f"seeds repeat: {seeds}")
    if any(not 0 <= s < 2**63 for s in seeds):
        raise ctx.error("experiment.seeds", f"seeds must be in [0, 2**63), got {seeds}")
    device = _typed(ctx, exp, "device", str, "experiment", "auto", "a string")
    try:
        check_device(device, "experiment.device")
    except ConfigError as err:
        raise ctx.error("experiment.device", err.reason) from None
    # a path option with a default is never None
    output = cast(str, _path(ctx, exp, "output", "experiment", f"runs/{name}"))
    model_cache = _path(ctx, exp, "model_cache", "experiment", None)
    executor_options = ctx.table(exp, "executor_options", "experiment.executor_options")
    executor = ctx.component("executor", exp.get("executor", "local"), executor_options,
                             "experiment.executor", options_key="experiment.executor_options")
    threads = _positive_int(ctx, exp, "threads", "experiment")
    unit_timeout = _typed(ctx, exp, "unit_timeout", (int, float), "experiment", None,
                          "a positive number of seconds")
    if unit_timeout is not None and not (math.isfinite(unit_timeout) and unit_timeout > 0):
        raise ctx.error("experiment.unit_timeout",
                        f"expected a positive number of seconds, got {unit_timeout!r}")
    on_version_change = _typed(ctx, exp, "on_version_change", str, "experiment",
                               "recompute", "a string")
    if on_version_change not in VERSION_CHANGE_POLICIES:
        raise ctx.error("experiment.on_version_change",
                        f"unknown policy {on_version_change!r}"
                        f"{did_you_mean(on_version_change, VERSION_CHANGE_POLICIES)}; "
                        f"valid: {', '.join(VERSION_CHANGE_POLICIES)}")

    ctx.current = "data"
    data = ctx.table(raw, "data", "data", required=True)
    data_keys = ("dataset", "root", "train_subset", "test_subset")
    if "dataset" not in data:
        raise ctx.error("data.dataset", "missing: name a dataset plugin")
    data_spec = DataSpec(
        dataset=ctx.component("dataset", data["dataset"],
                              {k: v for k, v in data.items() if k not in data_keys},
                              "data.dataset", data_keys),
        root=_path(ctx, data, "root", "data", None),
        train_subset=_positive_int(ctx, data, "train_subset", "data"),
        test_subset=_positive_int(ctx, data, "test_subset", "data"),
    )

    ctx.current = "training"
    training_raw = ctx.table(raw, "training", "training")
    _parse_training(ctx, training_raw, "training")  # errors point at [training] itself

    models, seen = [], set()
    for i, entry in enumerate(_entries(ctx, raw, "models")):
        key = ctx.current = f"models[{i}]"
        label = _label(ctx, entry.get("name"), f"{key}.name")
        if label in seen:
            raise ctx.error(f"{key}.name", f"model name {label!r} is used twice")
        seen.add(label)
        override = entry.get("training", {})
        if not isinstance(override, dict):
            raise ctx.error(f"{key}.training", "expected a table of training settings")
        merged = {**training_raw, **override}
        host: tuple[str, ...] = ("name", "model", "training", "defenses")
        only = entry.get("defenses")
        if only is not None and (not isinstance(only, list) or not only
                                 or any(not isinstance(d, str) for d in only)):
            raise ctx.error(f"{key}.defenses", f"expected a non-empty list of defense stack "
                                               f"labels, got {only!r}")
        models.append(ModelSpec(
            label=label,
            component=_model_component(ctx, entry, label, key, host),
            training=_parse_training(ctx, merged, f"{key}.training"),
            raw_training=merged,
            defenses=tuple(only) if only is not None else None,
        ))

    defenses_raw = raw.get("defenses", {"none": []})
    if not isinstance(defenses_raw, dict) or not defenses_raw:
        raise ctx.error("defenses", "expected a table of named stacks, e.g. none = []")
    stacks = []
    for label, stack in defenses_raw.items():
        key = ctx.current = f"defenses.{label}"
        _label(ctx, label, key)
        if not isinstance(stack, list) or any(not isinstance(d, dict) for d in stack):
            raise ctx.error(key, "expected a list of tables such as "
                                 "[{ defense = \"weight_decay\" }]")
        comps = []
        for j, d in enumerate(stack):
            if "defense" not in d:
                raise ctx.error(f"{key}[{j}]", "missing 'defense' (the defense plugin's name)")
            comps.append(ctx.component("defense", d["defense"],
                                       {k: v for k, v in d.items() if k != "defense"},
                                       f"{key}[{j}].defense", ("defense",)))
        stacks.append(DefenseStack(label, tuple(comps)))

    stack_labels = {s.label for s in stacks}
    for i, model in enumerate(models):
        for label in model.defenses or ():
            if label not in stack_labels:
                raise ctx.error(f"models[{i}].defenses", f"unknown defense stack {label!r}"
                                                         f"{did_you_mean(label, stack_labels)}")

    attacks, seen = [], set()
    model_labels = {m.label for m in models}
    host = ("name", "attack", "library", "epsilons", "samples", "targets", "source",
            "examples")
    for i, entry in enumerate(_entries(ctx, raw, "attacks")):
        key = ctx.current = f"attacks[{i}]"
        if "attack" not in entry:
            raise ctx.error(f"{key}.attack", "missing: name an attack plugin "
                                             "(e.g. \"foolbox.LinfPGD\")")
        component = entry["attack"]
        if "library" in entry:
            if not isinstance(entry["library"], str) or not isinstance(component, str):
                raise ctx.error(f"{key}.library", "expected library and attack names "
                                                  "(strings)")
            component = f"{entry['library']}.{component}"
        label = _label(ctx, entry.get("name", component), f"{key}.name")
        if label in seen:
            raise ctx.error(f"{key}.name", f"attack name {label!r} is used twice")
        seen.add(label)
        if "epsilons" not in entry:
            raise ctx.error(f"{key}.epsilons", "missing: the sweep of budgets")
        targets = entry.get("targets")
        if targets not in (None, "all", "random", "cyclic"):
            raise ctx.error(f"{key}.targets",
                            f"expected \"all\", \"random\" or \"cyclic\", got {targets!r}")
        source = entry.get("source")
        if source is not None:
            if not isinstance(source, str) or source.count("/") != 1:
                raise ctx.error(f"{key}.source", f"expected \"MODEL/DEFENSE\", got {source!r}")
            m, d = source.split("/")
            if m not in model_labels:
                raise ctx.error(f"{key}.source",
                                f"unknown model {m!r}{did_you_mean(m, model_labels)}")
            if d not in stack_labels:
                raise ctx.error(f"{key}.source", f"unknown defense stack {d!r}"
                                                 f"{did_you_mean(d, stack_labels)}")
            allowed = next(mod.defenses for mod in models if mod.label == m)
            if allowed is not None and d not in allowed:
                raise ctx.error(f"{key}.source", f"model {m!r} is not trained with stack "
                                                 f"{d!r} (its defenses are {list(allowed)})")
            source = (m, d)
        spec = AttackSpec(
            label=label,
            component=ctx.component("attack", component,
                                    {k: v for k, v in entry.items() if k not in host},
                                    f"{key}.attack", host),
            epsilons=parse_epsilons(ctx, entry["epsilons"], f"{key}.epsilons"),
            samples=_positive_int(ctx, entry, "samples", key),
            targets=targets,
            source=source,
            examples=_typed(ctx, entry, "examples", int, key, 8, "an integer"),
        )
        if spec.examples < 0:
            raise ctx.error(f"{key}.examples", f"expected an integer >= 0, got {spec.examples}")
        attack_cls = cast("type[Attack]", registry.get("attack", spec.component.name))
        if targets and not attack_cls.supports_targets:
            raise ctx.error(f"{key}.targets",
                            f"attack {spec.component.name!r} has no targeted mode")
        if attack_cls.threat_model == ThreatModel.L0 and spec.epsilons[-1] > 1:
            raise ctx.error(f"{key}.epsilons", f"L0 budgets are fractions of the input "
                                               f"values, at most 1; got {spec.epsilons[-1]}")
        attacks.append(spec)

    ctx.current = "metrics"
    metrics_raw = ctx.table(raw, "metrics", "metrics")
    use = metrics_raw.get("use", [])
    if not isinstance(use, list) or any(not isinstance(u, str) for u in use):
        raise ctx.error("metrics.use", "expected a list of metric names")
    if len(set(use)) != len(use):
        raise ctx.error("metrics.use", f"metrics repeat: {use}")
    ctx.check_keys(metrics_raw, ("use", *use), "metrics")
    metrics = []
    for i, metric in enumerate(use):
        options = metrics_raw.get(metric, {})
        if not isinstance(options, dict):
            raise ctx.error(f"metrics.{metric}", "expected a table of options")
        metrics.append(ctx.component("metric", metric, options, f"metrics.use[{i}]",
                                     options_key=f"metrics.{metric}"))

    ctx.current = "report"
    report = _parse_report(ctx, ctx.table(raw, "report", "report"))

    return ExperimentSpec(
        name=name, file=file, seeds=tuple(seeds), device=device, output=output,
        model_cache=model_cache, executor=executor, data=data_spec, models=tuple(models),
        defenses=tuple(stacks), attacks=tuple(attacks), metrics=tuple(metrics),
        report=report, raw=original, threads=threads, unit_timeout=unit_timeout,
        on_version_change=on_version_change,
    )


def component_spec(kind: str, name: str, options: dict[str, Any], *,
                   registry: Registry | None = None, where: str = "") -> ComponentSpec:
    """Validate one component choice outside an experiment file (e.g. the attack that
    an adversarial-training defense names); errors carry ``where`` as their key path."""
    ctx = _Ctx(where or "<options>", "", registry or get_registry())
    return ctx.component(kind, name, options, where or kind)


def load_experiment(path: str | Path, *, registry: Registry | None = None,
                    paths: bool = True, overrides: Overrides = None) -> ExperimentSpec:
    """Read an experiment file, apply ``overrides`` and validate it and, with ``paths``,
    check that its output directory and model cache can be written
    (:func:`check_paths`); errors name the file and key."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such experiment file", file=str(path)) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read: {getattr(err, 'strerror', None) or err}",
                          file=str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text (byte {err.start}); TOML files are UTF-8",
                          file=str(path)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"invalid TOML: {err}", file=str(path)) from None
    except RecursionError:
        raise ConfigError("invalid TOML: nested too deeply", file=str(path)) from None
    spec = parse_experiment(raw, file=str(path), text=text, registry=registry,
                            overrides=overrides)
    if paths:
        check_paths(spec)
    return spec
