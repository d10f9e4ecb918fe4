"""The MLflow exporter against a real local tracking store (SQLite)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robench

mlflow = pytest.importorskip("mlflow")

from robench.mlflow_export import export_run  # noqa: E402


def test_params_metrics_and_report_reach_a_sqlite_store(tmp_path, registry):
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.rand(20, 4), torch.randint(0, 3, (20,))
    run = robench.evaluate(net, x, y, ["torchattacks.FGSM"], [0.0, 0.1, 0.3], name="lin",
                           out=tmp_path / "run", report=("md",), device="cpu",
                           registry=registry)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = export_run(run, tracking_uri=uri, experiment="tests",
                        artifact_location=(tmp_path / "artifacts").as_uri())
    client = mlflow.tracking.MlflowClient(uri)
    stored = client.get_run(run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params["attack.torchattacks.FGSM"] == "torchattacks.FGSM"
    (cell,) = run.results["cell"].unique()
    history = client.get_metric_history(run_id, f"robust_accuracy.{cell}.torchattacks.FGSM")
    results = run.results
    expected = ((results["correct_clean"] & results["correct_adv"])
                .groupby(results["epsilon"]).mean().tolist())
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == pytest.approx(expected)
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.md", "run.json"} <= names
