"""Experiment files: TOML -> frozen, validated :class:`ExperimentSpec`.

Every mistake a user can make in an experiment file (unknown section or key, unknown
plugin, wrong type, impossible value) raises :class:`robench.ConfigError` naming the
file, the line where it can be found, the key path, what was expected and the closest
valid name. Validation imports plugin modules but never torch.

The format is documented in README.md ("Experiment files"); in short::

    [experiment]  name, seeds, device, output, model_cache, executor,
                  executor_options = {...}, threads, unit_timeout
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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError, PluginError, did_you_mean
from .options import option_fields, parse_number, parse_options
from .plugins import Registry, get_registry

SECTIONS = ("experiment", "data", "training", "models", "defenses", "attacks", "metrics",
            "report")


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
    (untargeted), ``"all"`` (every other class per input) or ``"random"`` (one random
    other class per input). ``source``: ``"MODEL/DEFENSE"`` labels of the model the
    attack is crafted on (a transfer attack); None attacks each model itself.
    ``examples``: how many inputs to keep as artifacts for reports. How many inputs an
    attack processes at once is the attack's own option (``batch_size`` where it has one).
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

    def __init__(self, file: str, text: str, registry: Registry):
        self.file, self.lines, self.registry = file, text.splitlines(), registry

    def error(self, key: str, message: str) -> ConfigError:
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
        try:
            parsed = parse_options(cls.Options, options, extra_keys=host_keys)
        except ConfigError as err:
            where = options_key or key.rsplit('.', 1)[0]
            sub = f"{where}.{err.key}" if err.key else key
            raise self.error(sub, f"{kind} {name!r}: {err.reason}") from None
        return ComponentSpec(kind, name, parsed, dict(options))


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
            eps = ([start + (stop - start) * i / (num - 1) for i in range(num)] if num > 1
                   else [start])
        else:
            step = number(value["step"], f"{key}.step")
            if step <= 0:
                raise ctx.error(f"{key}.step", f"expected a positive step, got {step}")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
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


def _label(ctx: _Ctx, value: Any, key: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
        raise ctx.error(key, f"expected a label of letters, digits, '_', '.', '+' or '-', "
                             f"got {value!r}")
    return value


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


def parse_experiment(raw: dict[str, Any], *, file: str = "<experiment>", text: str = "",
                     registry: Registry | None = None) -> ExperimentSpec:
    """Validate a parsed TOML mapping into an :class:`ExperimentSpec`."""
    registry = registry or get_registry()
    ctx = _Ctx(file, text, registry)
    ctx.check_keys(raw, SECTIONS, "")

    exp = ctx.table(raw, "experiment", "experiment")
    ctx.check_keys(exp, ("name", "seeds", "device", "output", "model_cache", "executor",
                         "executor_options", "threads", "unit_timeout", "description"),
                   "experiment")
    name = _label(ctx, exp.get("name", Path(file).stem), "experiment.name")
    seeds = exp.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or \
            any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ctx.error("experiment.seeds", f"expected a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ctx.error("experiment.seeds", f"seeds repeat: {seeds}")
    device = _typed(ctx, exp, "device", str, "experiment", "auto", "a string")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise ctx.error("experiment.device", f"expected auto, cpu, cuda or cuda:N, got {device!r}")
    output = _typed(ctx, exp, "output", str, "experiment", f"runs/{name}", "a path")
    model_cache = _typed(ctx, exp, "model_cache", str, "experiment", None, "a path")
    executor_options = ctx.table(exp, "executor_options", "experiment.executor_options")
    executor = ctx.component("executor", exp.get("executor", "local"), executor_options,
                             "experiment.executor", options_key="experiment.executor_options")
    threads = _positive_int(ctx, exp, "threads", "experiment")
    unit_timeout = _typed(ctx, exp, "unit_timeout", (int, float), "experiment", None,
                          "a positive number of seconds")
    if unit_timeout is not None and not (math.isfinite(unit_timeout) and unit_timeout > 0):
        raise ctx.error("experiment.unit_timeout",
                        f"expected a positive number of seconds, got {unit_timeout!r}")

    data = ctx.table(raw, "data", "data", required=True)
    data_keys = ("dataset", "root", "train_subset", "test_subset")
    if "dataset" not in data:
        raise ctx.error("data.dataset", "missing: name a dataset plugin")
    data_spec = DataSpec(
        dataset=ctx.component("dataset", data["dataset"],
                              {k: v for k, v in data.items() if k not in data_keys},
                              "data.dataset", data_keys),
        root=_typed(ctx, data, "root", str, "data", None, "a path"),
        train_subset=_positive_int(ctx, data, "train_subset", "data"),
        test_subset=_positive_int(ctx, data, "test_subset", "data"),
    )

    training_raw = ctx.table(raw, "training", "training")
    _parse_training(ctx, training_raw, "training")  # errors point at [training] itself

    models_raw = raw.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise ctx.error("models", "expected at least one [[models]] entry")
    models, seen = [], set()
    for i, entry in enumerate(models_raw):
        key = f"models[{i}]"
        label = _label(ctx, entry.get("name"), f"{key}.name")
        if label in seen:
            raise ctx.error(f"{key}.name", f"model name {label!r} is used twice")
        seen.add(label)
        override = entry.get("training", {})
        if not isinstance(override, dict):
            raise ctx.error(f"{key}.training", "expected a table of training settings")
        merged = {**training_raw, **override}
        host = ("name", "model", "training", "defenses")
        only = entry.get("defenses")
        if only is not None and (not isinstance(only, list) or not only
                                 or any(not isinstance(d, str) for d in only)):
            raise ctx.error(f"{key}.defenses", f"expected a non-empty list of defense stack "
                                               f"labels, got {only!r}")
        models.append(ModelSpec(
            label=label,
            component=ctx.component("model", entry.get("model", label),
                                    {k: v for k, v in entry.items() if k not in host},
                                    f"{key}.model", host),
            training=_parse_training(ctx, merged, f"{key}.training"),
            raw_training=merged,
            defenses=tuple(only) if only is not None else None,
        ))

    defenses_raw = raw.get("defenses", {"none": []})
    if not isinstance(defenses_raw, dict) or not defenses_raw:
        raise ctx.error("defenses", "expected a table of named stacks, e.g. none = []")
    stacks = []
    for label, stack in defenses_raw.items():
        key = f"defenses.{label}"
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

    attacks_raw = raw.get("attacks")
    if not isinstance(attacks_raw, list) or not attacks_raw:
        raise ctx.error("attacks", "expected at least one [[attacks]] entry")
    attacks, seen = [], set()
    model_labels = {m.label for m in models}
    host = ("name", "attack", "library", "epsilons", "samples", "targets", "source",
            "examples")
    for i, entry in enumerate(attacks_raw):
        key = f"attacks[{i}]"
        if "attack" not in entry:
            raise ctx.error(f"{key}.attack", "missing: name an attack plugin "
                                             "(e.g. \"foolbox.LinfPGD\")")
        component = entry["attack"]
        if "library" in entry:
            component = f"{entry['library']}.{component}"
        label = _label(ctx, entry.get("name", component), f"{key}.name")
        if label in seen:
            raise ctx.error(f"{key}.name", f"attack name {label!r} is used twice")
        seen.add(label)
        if "epsilons" not in entry:
            raise ctx.error(f"{key}.epsilons", "missing: the sweep of budgets")
        targets = entry.get("targets")
        if targets not in (None, "all", "random"):
            raise ctx.error(f"{key}.targets", f"expected \"all\" or \"random\", got {targets!r}")
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
        if targets and not registry.get("attack", spec.component.name).supports_targets:
            raise ctx.error(f"{key}.targets",
                            f"attack {spec.component.name!r} has no targeted mode")
        attacks.append(spec)

    metrics_raw = ctx.table(raw, "metrics", "metrics")
    use = metrics_raw.get("use", [])
    if not isinstance(use, list) or any(not isinstance(u, str) for u in use):
        raise ctx.error("metrics.use", "expected a list of metric names")
    ctx.check_keys(metrics_raw, ("use", *use), "metrics")
    metrics = []
    for i, metric in enumerate(use):
        options = metrics_raw.get(metric, {})
        if not isinstance(options, dict):
            raise ctx.error(f"metrics.{metric}", "expected a table of options")
        metrics.append(ctx.component("metric", metric, options, f"metrics.use[{i}]"))

    report = _parse_report(ctx, ctx.table(raw, "report", "report"))

    return ExperimentSpec(
        name=name, file=file, seeds=tuple(seeds), device=device, output=output,
        model_cache=model_cache, executor=executor, data=data_spec, models=tuple(models),
        defenses=tuple(stacks), attacks=tuple(attacks), metrics=tuple(metrics),
        report=report, raw=raw, threads=threads, unit_timeout=unit_timeout,
    )


def component_spec(kind: str, name: str, options: dict[str, Any], *,
                   registry: Registry | None = None, where: str = "") -> ComponentSpec:
    """Validate one component choice outside an experiment file (e.g. the attack that
    an adversarial-training defense names); errors carry ``where`` as their key path."""
    ctx = _Ctx(where or "<options>", "", registry or get_registry())
    return ctx.component(kind, name, options, where or kind)


def load_experiment(path: str | Path, *, registry: Registry | None = None) -> ExperimentSpec:
    """Read and validate an experiment file; errors name the file and key."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("no such experiment file", file=str(path)) from None
    except OSError as err:
        raise ConfigError(f"cannot read: {err.strerror}", file=str(path)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"invalid TOML: {err}", file=str(path)) from None
    return parse_experiment(raw, file=str(path), text=text, registry=registry)
