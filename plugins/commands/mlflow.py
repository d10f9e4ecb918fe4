"""``robench mlflow RUN_DIR --tracking-uri URI [--experiment NAME]``: export a run to MLflow.

The command line of :func:`robench.mlflow_export.export_run` (optional: ``pip install
robench[mlflow]``): one MLflow run per robench run, with its params, robust accuracy per
budget, clean accuracy and the report files as artifacts. It prints the MLflow run id.
Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

DEFAULT_EXPERIMENT = "robench"
"""MLflow experiment the run is logged to when ``--experiment`` is not given."""


def _run_mlflow(args) -> int:
    """Export the run directory; print the MLflow run id."""
    from robench.api import load
    from robench.errors import RobenchError
    from robench.mlflow_export import export_run
    from robench.results import RunStore

    RunStore(args.run_dir).record()  # a missing or damaged run.json is one line, exit 2
    try:
        run_id = export_run(load(args.run_dir), tracking_uri=args.tracking_uri,
                            experiment=args.experiment)
    except ImportError as err:
        raise RobenchError(str(err)) from None
    print(f"mlflow run {run_id}: experiment {args.experiment!r} at {args.tracking_uri}")
    return 0


def add_mlflow_command(subparsers) -> None:
    """Add ``robench mlflow RUN_DIR --tracking-uri URI [--experiment NAME]`` to the
    ``robench`` sub-parsers (called from the package's ``robench_register_commands``)."""
    parser = subparsers.add_parser(
        "mlflow", help="export a run to an MLflow tracking store (needs mlflow)")
    parser.add_argument("run_dir")
    parser.add_argument("--tracking-uri", required=True,
                        help="MLflow tracking URI, e.g. sqlite:///mlflow.db or a server URL")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                        help=f"MLflow experiment name, created when missing "
                             f"(default {DEFAULT_EXPERIMENT!r})")
    parser.set_defaults(func=_run_mlflow)
