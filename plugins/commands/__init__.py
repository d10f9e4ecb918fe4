"""Built-in command plugins: subcommands added through ``robench_register_commands``.

``robench doctor`` lives here and ``robench mlflow`` in :mod:`.mlflow`, registered exactly
as a third-party plugin adds a command. This module stays light: the commands import torch
and MLflow only when they run.
"""

from __future__ import annotations

import robench

from .mlflow import add_mlflow_command

SAMPLES = 200
"""Test inputs ``robench doctor`` probes by default."""


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _run_doctor(args) -> int:
    """Print one line per (cell, probe); exit 1 when a probe flags masking."""
    from robench.options import parse_number

    from .doctor import diagnose

    eps = None
    if args.eps is not None:
        try:
            eps = parse_number(args.eps, "--eps")
        except robench.ConfigError as err:
            raise robench.ConfigError(err.reason, key="--eps") from None
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


@robench.hookimpl
def robench_register_commands(subparsers):
    """Register ``robench doctor RUN_DIR [--eps E] [--samples N] [--device D]`` and
    ``robench mlflow RUN_DIR --tracking-uri URI [--experiment NAME]``."""
    parser = subparsers.add_parser(
        "doctor", help="probe each trained model of a run for gradient masking")
    parser.add_argument("run_dir")
    parser.add_argument("--eps", help="Linf budget of the probes (default: the middle of the "
                                      "first attack's grid); fractions such as 8/255 are "
                                      "accepted")
    parser.add_argument("--samples", type=_positive_int, default=SAMPLES,
                        help=f"test inputs probed (default {SAMPLES})")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.set_defaults(func=_run_doctor)
    add_mlflow_command(subparsers)
