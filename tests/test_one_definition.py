"""One definition per number: robust accuracy (the metrics compute it, everything else
reads their rows), convolution singular values (the spectral_norm defense and the
singular_values metric share one routine), predictions (one host helper) and the attack
inside metrics (the host's attack factory, with the user's options)."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import robench
from robench import CellData, DataInfo, LoadedData
from robench.results import RunStore, atomic_write_parquet

ROOT = Path(__file__).resolve().parents[1]
METRICS = ROOT / "plugins" / "metrics"

PER_SAMPLE_OUTCOMES = {"correct_adv", "correct_clean"}
"""The per-sample columns robust and clean accuracy are means of."""


def _reads(path: Path) -> list[int]:
    """Lines of ``path`` that read a per-sample outcome column: the column name used
    anywhere but as the key of a dict that builds result rows or as the name in a
    schema ``Column(...)``."""
    tree = ast.parse(path.read_text())
    allowed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            allowed.update(id(k) for k in node.keys if k is not None)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "Column" and node.args):
            allowed.add(id(node.args[0]))
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and n.value in PER_SAMPLE_OUTCOMES
            and id(n) not in allowed]


def test_only_the_metrics_read_per_sample_outcomes():
    offenders = {str(path.relative_to(ROOT)): lines
                 for folder in ("robench", "plugins")
                 for path in sorted((ROOT / folder).rglob("*.py"))
                 if METRICS not in path.parents and (lines := _reads(path))}
    assert offenders == {}


def test_the_check_sees_a_recomputation(tmp_path):
    path = tmp_path / "recomputes.py"
    path.write_text('def f(results):\n    return results["correct_adv"].mean()\n'
                    'ROW = {"correct_adv": True}\n')
    assert _reads(path) == [2]


# ------------------------------------------------------------------ robust accuracy


@pytest.fixture(scope="module")
def doctored(tmp_path_factory):
    """A single-budget run whose robust_accuracy, worst_case_accuracy and
    clean_accuracy rows are replaced by values no per-sample result gives."""
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.rand(24, 4), torch.randint(0, 3, (24,))
    run = robench.evaluate(net, x, y, ["torchattacks.FGSM"], [0.0, 0.2],
                           out=tmp_path_factory.mktemp("doctored"), device="cpu",
                           metrics=["clean_accuracy", "robust_accuracy", "worst_case"],
                           report=(), registry=None)
    store = RunStore(run.path)
    metrics = store.metrics
    for metric, value in (("robust_accuracy", 0.123), ("worst_case_accuracy", 0.321),
                          ("clean_accuracy", 0.777)):
        rows = metrics["metric"] == metric
        metrics.loc[rows, "value"] = value + metrics.loc[rows, "epsilon"].fillna(0)
        metrics.loc[rows, ["lower", "upper"]] = np.nan
    atomic_write_parquet(store.metrics_path, metrics)
    return robench.load(run.path)


def test_the_leaderboard_shows_the_rows(doctored):
    from robench.leaderboard import leaderboard

    (entry,) = leaderboard(doctored, eps=0.2)
    assert entry["robust_accuracy"] == pytest.approx(0.521)
    assert entry["clean_accuracy"] == pytest.approx(0.777)


def test_the_mlflow_export_logs_the_rows(doctored, monkeypatch):
    from robench.mlflow_export import export_run

    logged: dict[str, list[tuple[int, float]]] = {}

    class Client:
        def __init__(self, uri):
            pass

        def get_experiment_by_name(self, name):
            return types.SimpleNamespace(experiment_id="0")

        def create_run(self, experiment_id, run_name):
            return types.SimpleNamespace(info=types.SimpleNamespace(run_id="r"))

        def log_metric(self, run_id, key, value, step=0):
            logged.setdefault(key, []).append((step, value))

        def log_param(self, *args):
            pass

        log_artifact = set_terminated = log_param

    tracking = types.ModuleType("mlflow.tracking")
    tracking.MlflowClient = Client  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlflow", types.ModuleType("mlflow"))
    monkeypatch.setitem(sys.modules, "mlflow.tracking", tracking)
    export_run(doctored)
    (cell,) = doctored.record.cells
    assert logged[f"robust_accuracy.{cell}.torchattacks.FGSM"] == [
        (0, pytest.approx(0.123)), (1, pytest.approx(0.323))]
    assert logged[f"clean_accuracy.{cell}"] == [(0, pytest.approx(0.777))]


# ------------------------------------------------------- convolution singular values


def test_the_defense_and_the_metric_share_the_transfer_matrices(monkeypatch):
    """Doubling what the shared routine returns doubles the metric's values and halves
    the norm the defense lets through (measured with the routine as it was): both read
    it."""
    from robench_plugins import operators
    from robench_plugins.defenses.spectral import SpectralNorm
    from robench_plugins.metrics.spectrum import SingularValues

    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular")  # FFT-sized: 4x32x32
    x = torch.rand(2, 4, 32, 32)
    info = DataInfo("toy", (4, 32, 32), 4)
    cell = CellData({"dataset": "toy", "model": "m", "defense": "none", "seed": 0,
                     "cell": "c"}, conv, LoadedData(info, x, torch.zeros(2), x,
                                                    torch.zeros(2)),
                    pd.DataFrame(), "cpu", attack=None)

    def sv_max():
        rows = SingularValues().from_cell(cell)
        return rows.loc[rows["metric"] == "sv_max", "value"].item()

    def clipped_norm():
        defense = SpectralNorm(SpectralNorm.Options(strength=0.5, layers="conv"))
        layer = nn.Conv2d(4, 4, 3, padding=1)
        with torch.no_grad():
            layer.weight.copy_(conv.weight * 8)
        defense.input_sizes = {"": (32, 32)}
        defense.clip(layer)
        blocks = original(layer.weight.detach().double(), (32, 32))
        return torch.linalg.svdvals(blocks).max().item()

    original = operators.transfer_matrices
    measured, norm = sv_max(), clipped_norm()
    calls = []

    def doubled(*args, **kwargs):
        calls.append(args[1])
        return 2 * original(*args, **kwargs)

    monkeypatch.setattr(operators, "transfer_matrices", doubled)
    assert sv_max() == pytest.approx(2 * measured, rel=1e-9)
    assert clipped_norm() == pytest.approx(norm / 2, rel=1e-3)
    assert (32, 32) in calls


# ------------------------------------------------------------------------ predictions


def test_predictions_come_from_one_helper(monkeypatch):
    """A model whose host logits are replaced: the attack runtime, the host's
    predictions and rows and the metrics' logits all follow the replacement."""
    from robench import AttackResult, ThreatModel, attack_runtime, evaluation
    from robench_plugins.metrics import _weights

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.rand(10, 4), torch.zeros(10, dtype=torch.long)

    def always_two(model, x, batch_size, device):
        out = torch.zeros(len(x), 3, device=device)
        out[:, 2] = 1.0
        return out

    monkeypatch.setattr(evaluation, "device_logits", always_two)
    assert attack_runtime.predict(model, x).tolist() == [2] * 10
    assert attack_runtime.succeeded(model, x, y, None).all()
    assert evaluation.predict(model, x, 4, "cpu")[0].tolist() == [2] * 10
    assert evaluation.predictions(model, x, 4, "cpu").tolist() == [2] * 10
    _, correct = _weights.loss_and_correct(model, x, y, "cpu")
    assert not correct.any()
    rows, _ = evaluation.result_rows(
        model, AttackResult(epsilons=[0.0], adversarials=[x]), x, y, np.arange(10), None,
        threat_model=ThreatModel.LINF, bounds=(0.0, 1.0), num_classes=3, batch_size=4,
        device="cpu", examples=0)
    assert rows["pred_clean"].tolist() == [2] * 10 and rows["pred_adv"].tolist() == [2] * 10


# ------------------------------------------------------------ the attack in metrics


@pytest.mark.parametrize("metric_name", ["ge_gap", "loss_variation"])
def test_metrics_attack_through_the_factory_with_the_users_options(metric_name, registry):
    built, perturbed = [], []

    class Recording:
        def perturb(self, model, x, y, eps, *, bounds, generator):
            perturbed.append(eps)
            return x

    def factory(name, options):
        built.append((name, options))
        return Recording()

    torch.manual_seed(0)
    x, y = torch.rand(6, 4), torch.randint(0, 3, (6,))
    cell = CellData({"dataset": "toy", "model": "m", "defense": "none", "seed": 0,
                     "cell": "c"}, nn.Linear(4, 3), LoadedData(DataInfo("toy", (4,), 3),
                                                               x, y, x, y),
                    pd.DataFrame(), "cpu", attack=factory)
    cls = registry.get("metric", metric_name)
    options = {"eps": 0.25, "attack": "torchattacks.PGD",
               "attack_options": {"steps": 3, "alpha": 0.01}}
    rows = cls(cls.Options(**options)).from_cell(cell)
    assert built == [("torchattacks.PGD", {"steps": 3, "alpha": 0.01})]
    assert perturbed and set(perturbed) == {0.25}
    assert len(rows)
