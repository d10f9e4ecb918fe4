"""The ``robench`` command line.

Exit codes: 0 success; 1 a run finished with failed cells or units; 2 bad input (the
error is printed as one line, without a traceback); 130 interrupted.
``--help``, ``validate`` and ``plugins`` never import torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from . import __version__
from .errors import RobenchError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robench", description="Benchmark adversarial robustness: defenses x attacks "
                                    "x budgets, from one experiment file.")
    parser.add_argument("--version", action="version", version=f"robench {__version__}")
    parser.add_argument("--no-plugins", action="store_true",
                        help="load only the built-in plugins (as "
                             "ROBENCH_DISABLE_PLUGIN_AUTOLOAD=1 does)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="train/load models, run the attacks, write results and report")
    p.add_argument("experiment", help="experiment file (TOML)")
    p.add_argument("--out", help="run directory (default: [experiment] output)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the file's, else auto)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the cells and a rough cost estimate; run nothing")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--no-report", action="store_true", help="skip rendering the report")

    p = sub.add_parser("validate", help="check an experiment file without running it")
    p.add_argument("experiment")

    p = sub.add_parser("plugins", help="list installed datasets, models, defenses, attacks, ...")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.add_argument("--verbose", "-v", action="store_true", help="docstrings and options")
    p.add_argument("--kind", help="only this kind (dataset, model, defense, attack, ...)")

    p = sub.add_parser("report", help="(re)render the report of a run directory")
    p.add_argument("run_dir")

    p = sub.add_parser("doctor", help="probe each trained model of a run for gradient masking")
    p.add_argument("run_dir")
    p.add_argument("--eps", help="Linf budget of the probes (default: the middle of the first "
                                 "attack's grid); fractions such as 8/255 are accepted")
    p.add_argument("--samples", type=int, default=200, help="test inputs probed (default 200)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")

    p = sub.add_parser("compare", help="compare several run directories in one report")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", required=True, help="directory for the comparison report")
    return parser


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
            extra = f" [{entry.cls.library}, {entry.cls.threat_model.value}]" \
                if entry.kind == "attack" else ""
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
        print(f"warning: plugin {failure.plugin!r} from {failure.package} failed to load "
              f"and was skipped: {failure.error}", file=sys.stderr)
    return 0


def _cmd_validate(args) -> int:
    from .config import load_experiment
    from .runner import plan

    spec = load_experiment(args.experiment)
    cells, units = plan(spec)
    print(f"{args.experiment}: ok ({len(cells)} cells, {len(units)} attack sweeps)")
    return 0


def _estimate(spec, cells, units) -> str:
    """A rough cost in forward+backward passes over single inputs (order of magnitude)."""
    n_train = spec.data.train_subset
    n_test = spec.data.test_subset
    train = 0.0
    for cell in cells:
        steps = 1
        for d in cell.defense.defenses:
            if d.name == "adversarial_training":
                steps += 1 + int(d.options.attack_options.get("steps", 1))
        train += cell.model.training.epochs * steps * (n_train or math.nan)
    attack = 0.0
    for unit in units:
        samples = unit.attack.samples or n_test or math.nan
        steps = getattr(unit.attack.component.options, "steps", 1) or 1
        attack += samples * len(unit.attack.epsilons) * steps
    def fmt(v):
        return "unknown (set train_subset/test_subset)" if math.isnan(v) else f"{v:,.0f}"
    return (f"rough cost: training {fmt(train)} input-passes, attacks {fmt(attack)} "
            f"input-passes (x classes for targeted sweeps)")


def _cmd_run(args) -> int:
    from .config import load_experiment
    from .runner import plan

    spec = load_experiment(args.experiment)
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
    from .api import run

    result = run(spec, out=args.out, device=args.device, progress=not args.no_progress,
                 report=not args.no_report)
    failures = result.failures()
    print(f"run {result.status}: {result.path}")
    if not args.no_report and spec.report_formats:
        print(f"report: {result.path / 'report.html'}")
    for name, error in failures.items():
        print(f"failed: {name}: {error}", file=sys.stderr)
    return 1 if failures else 0


def _cmd_report(args) -> int:
    from .api import load

    paths = load(args.run_dir).report()
    for fmt, path in paths.items():
        print(f"{fmt}: {path}")
    return 0


def _cmd_doctor(args) -> int:
    from .doctor import diagnose
    from .options import parse_number

    eps = parse_number(args.eps, "--eps") if args.eps is not None else None
    flagged = False
    for cell_id, findings in diagnose(args.run_dir, eps=eps, samples=args.samples,
                                      device=args.device):
        if isinstance(findings, str):
            print(f"{cell_id}: skipped: {findings}")
            continue
        for finding in findings:
            flagged |= finding.flagged
            mark = "MASKING?" if finding.flagged else "ok"
            print(f"{cell_id}: {finding.check}: {mark}: {finding.detail}")
    return 1 if flagged else 0


def _cmd_compare(args) -> int:
    from .report import render_comparison

    for run_dir in args.run_dirs:
        if not (Path(run_dir) / "run.json").is_file():
            raise RobenchError(f"{run_dir}: not a robench run directory (no run.json)")
    paths = render_comparison(args.run_dirs, args.out)
    for fmt, path in paths.items():
        print(f"{fmt}: {path}")
    return 0


COMMANDS = {"run": _cmd_run, "validate": _cmd_validate, "plugins": _cmd_plugins,
            "report": _cmd_report, "compare": _cmd_compare, "doctor": _cmd_doctor}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robench`` console script."""
    args = _parser().parse_args(argv)
    if args.no_plugins:
        from .plugins import DISABLE_AUTOLOAD_ENV

        os.environ[DISABLE_AUTOLOAD_ENV] = "1"
    try:
        return COMMANDS[args.command](args)
    except RobenchError as err:
        print(f"robench: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `robench plugins | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("robench: interrupted; finished units are kept, run again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
