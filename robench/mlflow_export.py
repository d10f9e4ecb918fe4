"""Export a finished run to MLflow (optional: the ``mlflow`` extra, ``pip install
robench[mlflow]``).

One MLflow run per robench run: the experiment's configuration hash, name, seeds, models,
defense stacks and attacks as params; robust accuracy per (cell, attack) as a metric
whose steps are the positions in the budget sweep (MLflow steps are integers; the
budgets themselves are a param per attack); clean accuracy per cell (both the rows of
the ``robust_accuracy`` and ``clean_accuracy`` metrics, unconditional convention); the
report and run.json as artifacts. Works with any tracking store, e.g. a local SQLite file.
"""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = ("report.html", "report.md", "run.json", "metrics.parquet", "leaderboard.json")


def export_run(run, *, tracking_uri: str | None = None, experiment: str = "robench",
               artifact_location: str | None = None) -> str:
    """Log ``run`` (a :class:`robench.api.Run`) to MLflow; return the MLflow run id.

    ``tracking_uri`` defaults to MLflow's own setting; ``experiment`` is created (with
    ``artifact_location`` if given) when it does not exist.
    """
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportError("the MLflow exporter needs the mlflow extra: "
                          "`pip install robench[mlflow]`") from None

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else \
        client.create_experiment(experiment, artifact_location=artifact_location)
    record = run.store.record()
    mlflow_run = client.create_run(experiment_id, run_name=record.experiment.name)
    run_id = mlflow_run.info.run_id
    params = {"config_hash": record.experiment.config_hash, "name": record.experiment.name,
              "seeds": record.seeds, "device": record.device}
    for label, attack in record.attacks.items():
        params[f"attack.{label}"] = attack.component
        params[f"attack.{label}.epsilons"] = attack.epsilons
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:6000])
    metrics = run.metrics  # the metrics' own rows: nothing is recomputed here
    robust = metrics[metrics["metric"] == "robust_accuracy"]
    if "convention" in robust:
        robust = robust[robust["convention"] == "unconditional"]
    for (cell, attack), group in robust.groupby(["cell", "attack"], sort=True):
        for step, value in enumerate(group.sort_values("epsilon")["value"].to_numpy()):
            client.log_metric(run_id, f"robust_accuracy.{cell}.{attack}", float(value),
                              step=step)
    clean = metrics[metrics["metric"] == "clean_accuracy"]
    for cell, group in clean.groupby("cell", sort=True):
        client.log_metric(run_id, f"clean_accuracy.{cell}", float(group["value"].iat[0]))
    for name in ARTIFACTS:
        path = Path(run.path) / name
        if path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id
