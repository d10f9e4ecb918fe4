"""The ``robench`` command line.

Exit codes: 0 success; 1 a run finished with failed cells or units, or an unexpected
error (one line; the traceback only with ``--debug``); 2 bad input (one line naming the
file and key, without a traceback); 130 interrupted. ``--help``, ``validate`` and
``plugins`` never import torch.

Plugins add commands through the ``robench_register_commands`` hook (``doctor`` is one).
``--no-plugins`` loads the built-ins only; ``-p no:NAME`` blocks one plugin.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from . import __version__
from .errors import ConfigError, RobenchError

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from .components import Attack

BLOCK_PREFIX = "no:"


class _UniqueCommands(argparse._SubParsersAction):
    """Sub-parsers that refuse a command name already taken (a plugin may not replace
    a built-in command or another plugin's)."""

    def add_parser(self, name, **kwargs):
        if name in self.choices:
            raise ValueError(f"command {name!r} already exists")
        return super().add_parser(name, **kwargs)


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-plugins", action="store_true",
                        help="load only the built-in plugins (as "
                             "ROBENCH_DISABLE_PLUGIN_AUTOLOAD=1 does)")
    parser.add_argument("-p", dest="plugin_flags", action="append", default=[],
                        metavar="no:NAME",
                        help="do not load the plugin NAME (repeatable; as "
                             "ROBENCH_BLOCK_PLUGINS=NAME,... does)")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error")


def _parser(registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robench", description="Benchmark adversarial robustness: defenses x attacks "
                                    "x budgets, from one experiment file.")
    parser.add_argument("--version", action="version", version=f"robench {__version__}")
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                action=_UniqueCommands)

    p = sub.add_parser("run", help="train/load models, run the attacks, write results and report")
    p.add_argument("experiment", help="experiment file (TOML)")
    p.add_argument("--out", help="run directory (default: [experiment] output)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the file's, else auto)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the cells and a rough cost estimate; run nothing")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--no-report", action="store_true", help="skip rendering the report")
    _override_option(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check an experiment file without running it")
    p.add_argument("experiment")
    _override_option(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("plugins", help="list installed datasets, models, defenses, attacks, ...")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.add_argument("--verbose", "-v", action="store_true", help="docstrings and options")
    p.add_argument("--kind", help="only this kind (dataset, model, defense, attack, ...)")
    p.set_defaults(func=_cmd_plugins)

    p = sub.add_parser("report", help="(re)render the report of a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("compare", help="compare several run directories in one report")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", required=True, help="directory for the comparison report")
    p.set_defaults(func=_cmd_compare)

    registry.register_commands(sub)
    return parser


def _override_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--override", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a value of the file (repeatable): KEY a key path "
                             "such as training.epochs or models[0].hidden, VALUE a TOML "
                             "value (else a string)")


def _overrides(args) -> list:
    from .overrides import from_command_line

    return [from_command_line(text) for text in args.overrides]


def _cmd_plugins(args) -> int:
    from .plugins import get_registry

    registry = get_registry()
    entries = [e for e in registry.entries() if not args.kind or e.kind == args.kind]
    if args.json:
        print(json.dumps([e.as_dict(verbose=args.verbose) for e in entries], indent=2))
    else:
        kind = None
        for entry in entries:
            if entry.kind != kind:
                kind = entry.kind
                print(f"{kind}s:")
            extra = ""
            if entry.kind == "attack":
                attack = cast("type[Attack]", entry.cls)
                extra = f" [{attack.library}, {attack.threat_model.value}]"
            summary = entry.as_dict()["summary"]
            print(f"  {entry.name:<32} {entry.package} {entry.as_dict()['version']}{extra}"
                  f"  {summary}")
            if args.verbose:
                info = entry.cls.describe()
                for line in info["doc"].splitlines()[1:]:
                    print(f"      {line}".rstrip())
                for opt in info["options"]:
                    print(f"      {opt['name']} ({opt['type']}, default {opt['default']!r})"
                          f"  {opt['help']}")
    for failure in registry.failures:
        print(f"warning: {failure}", file=sys.stderr)
    return 0


def _cmd_validate(args) -> int:
    from .config import load_experiment
    from .runner import plan

    spec = load_experiment(args.experiment, overrides=_overrides(args))
    cells, units = plan(spec)
    print(f"{args.experiment}: ok ({len(cells)} cells, {len(units)} attack sweeps)")
    return 0


def _attack_steps(component) -> int:
    """Iterations of an attack per input (its ``steps`` option, else one)."""
    steps = getattr(component.options, "steps", 1)
    return steps if isinstance(steps, int) and steps > 0 else 1


def _defense_steps(defense) -> int:
    """Extra input-passes per training input of a defense that runs an attack while
    training (an option naming an attack plugin, as adversarial training has)."""
    import dataclasses

    from .config import component_spec

    extra = 0
    for field in dataclasses.fields(defense.options):
        if field.metadata.get("component") == "attack":
            options_field = field.metadata.get("options_field")
            options = getattr(defense.options, options_field) if options_field else {}
            attack = component_spec("attack", getattr(defense.options, field.name),
                                    dict(options or {}))
            extra += 1 + _attack_steps(attack)
    return extra


def _estimate(spec, cells, units) -> str:
    """A rough cost in forward+backward passes over single inputs (order of magnitude)."""
    n_train = spec.data.train_subset
    n_test = spec.data.test_subset
    train = 0.0
    for cell in cells:
        steps = 1 + sum(_defense_steps(d) for d in cell.defense.defenses)
        train += cell.model.training.epochs * steps * (n_train or math.nan)
    attack = 0.0
    for unit in units:
        samples = unit.attack.samples or n_test or math.nan
        attack += samples * len(unit.attack.epsilons) * _attack_steps(unit.attack.component)

    def fmt(v):
        return "unknown (set train_subset/test_subset)" if math.isnan(v) else f"{v:,.0f}"
    return (f"rough cost: training {fmt(train)} input-passes, attacks {fmt(attack)} "
            f"input-passes (x classes for targeted sweeps)")


def _cmd_run(args) -> int:
    from .config import check_device, check_device_available, check_paths, load_experiment
    from .runner import plan

    if args.device is not None:
        check_device(args.device, "--device")
    spec = load_experiment(args.experiment, paths=args.out is None,
                           overrides=_overrides(args))
    if args.dry_run:
        cells, units = plan(spec)
        out = args.out or spec.output
        print(f"experiment {spec.name}: {len(cells)} cells, {len(units)} attack sweeps -> {out}")
        for cell in cells:
            print(f"  cell {cell.id} (model key {cell.key})")
        for attack in spec.attacks:
            print(f"  attack {attack.label}: {attack.component.name}, "
                  f"{len(attack.epsilons)} budgets {attack.epsilons[0]:g}..{attack.epsilons[-1]:g}")
        print("  " + _estimate(spec, cells, units))
        return 0
    if args.out is not None:
        check_paths(spec, out=args.out)
    device = args.device or spec.device
    if device not in ("auto", "cpu"):  # every machine has a CPU: no torch import needed
        check_device_available(device, "--device" if args.device else "experiment.device")
    from .api import run

    result = run(spec, out=args.out, device=args.device, progress=not args.no_progress,
                 report=not args.no_report)
    failures = result.failures()
    print(f"run {result.status}: {result.path}")
    if not args.no_report and spec.report_formats:
        print(f"report: {result.path / 'report.html'}")
    for name, error in failures.items():
        print(f"failed: {name}: {_one_line(error)}", file=sys.stderr)
    return 1 if failures else 0


def _cmd_report(args) -> int:
    from .api import load

    paths = load(args.run_dir).report()
    for fmt, path in paths.items():
        print(f"{fmt}: {path}")
    return 0


def _cmd_compare(args) -> int:
    from .config import directory_problem, path_problem
    from .report import render_comparison
    from .results import RunStore

    problem = path_problem(args.out) or directory_problem(args.out)
    if problem:
        raise ConfigError(problem, key="--out")
    for run_dir in args.run_dirs:
        RunStore(run_dir).record()  # a missing or damaged run.json: one line, exit 2
    paths = render_comparison(args.run_dirs, args.out)
    for fmt, path in paths.items():
        print(f"{fmt}: {path}")
    return 0


def _one_line(text: object) -> str:
    """``text`` on one line (messages must not spill over several)."""
    return " ".join(str(text).split())


@contextmanager
def _plugin_settings(no_plugins: bool, flags: list[str]) -> Iterator[None]:
    """Apply ``--no-plugins`` / ``-p no:NAME`` through their environment variables for
    the duration of one command (restored after, so in-process calls stay independent)."""
    from .plugins import BLOCK_ENV, DISABLE_AUTOLOAD_ENV, blocked_from_env

    bad = [f for f in flags if not f.startswith(BLOCK_PREFIX) or not f[len(BLOCK_PREFIX):]]
    if bad:
        raise ConfigError(f"expected -p {BLOCK_PREFIX}NAME (block the plugin NAME), "
                          f"got {bad[0]!r}", key="-p")
    saved = {k: os.environ.get(k) for k in (BLOCK_ENV, DISABLE_AUTOLOAD_ENV)}
    blocked = sorted(blocked_from_env() | {f[len(BLOCK_PREFIX):] for f in flags})
    if blocked:
        os.environ[BLOCK_ENV] = ",".join(blocked)
    if no_plugins:
        os.environ[DISABLE_AUTOLOAD_ENV] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _main(argv: list[str] | None, early: argparse.Namespace) -> int:
    from .plugins import get_registry

    with _plugin_settings(early.no_plugins, early.plugin_flags):
        args = _parser(get_registry()).parse_args(argv)
        return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robench`` console script."""
    early_parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _global_options(early_parser)
    early, _ = early_parser.parse_known_args(argv)
    try:
        return _main(argv, early)
    except RobenchError as err:
        print(f"robench: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `robench plugins | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("robench: interrupted; finished units are kept, run again to resume",
              file=sys.stderr)
        return 130
    except Exception as err:
        if early.debug:
            traceback.print_exc()
        hint = "" if early.debug else " (run with --debug for the traceback)"
        print(f"robench: unexpected error: {type(err).__name__}: {_one_line(err)}{hint}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
