"""``robench mlflow RUN_DIR --tracking-uri URI``: a run exported to a real local SQLite
tracking store through the command line, and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robench
from robench.cli import main

mlflow = pytest.importorskip("mlflow")


def test_command_exports_params_metrics_and_report(tmp_path, registry, capsys, monkeypatch):
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.rand(20, 4), torch.randint(0, 3, (20,))
    run = robench.evaluate(net, x, y, ["torchattacks.FGSM"], [0.0, 0.2], name="lin",
                           out=tmp_path / "run", report=("md",), device="cpu",
                           registry=registry)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["mlflow", str(tmp_path / "run"), "--tracking-uri", uri,
                 "--experiment", "cli"])
    assert code == 0
    out = capsys.readouterr().out
    run_id = out.split()[2].rstrip(":")
    client = mlflow.tracking.MlflowClient(uri)
    stored = client.get_run(run_id)
    assert client.get_experiment(stored.info.experiment_id).name == "cli"
    assert stored.info.status == "FINISHED"
    (cell,) = run.results["cell"].unique()
    clean = run.results.drop_duplicates("sample")["correct_clean"].mean()
    assert stored.data.metrics[f"clean_accuracy.{cell}"] == pytest.approx(clean)
    assert "report.md" in {a.path for a in client.list_artifacts(run_id)}


def test_not_a_run_directory_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["mlflow", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert code == 2
    err = capsys.readouterr().err
    assert "run.json" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_tracking_uri_is_required(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["mlflow", str(tmp_path)])
    assert exit_.value.code == 2
    assert "--tracking-uri" in capsys.readouterr().err
