"""robench.evaluate: a module and tensors in, the tidy frame, metrics and report out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import robench
from robench import ConfigError
from robench.results import RESULT_COLUMNS

EPSILONS = [0.0, 0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def problem():
    """A two-class linear model with logits (0, w.x + b) and inputs in [0.3, 0.7], so
    no budget up to 0.2 reaches the [0, 1] bounds and FGSM's effect is exact: it lowers
    the margin |w.x + b| of a correct input by eps * ||w||_1."""
    gen = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(200, 5, generator=gen)
    w = torch.tensor([1.0, -2.0, 0.5, 1.5, -1.0])
    b = -float((x @ w).median()) + 1e-3  # no input exactly on the boundary
    y = ((x @ w + b) > 0).long()
    y[:20] = 1 - y[:20]  # some clean mistakes
    net = nn.Linear(5, 2)
    with torch.no_grad():
        net.weight.copy_(torch.stack([torch.zeros(5), w]))
        net.bias.copy_(torch.tensor([0.0, b]))
    return net, x, y, w, b


def closed_form_accuracy(x, y, w, b, eps):
    score = x @ w + b
    correct = (score > 0).long() == y
    return (correct & (score.abs() > eps * w.abs().sum())).float().mean().item()


def test_frame_metrics_and_report_match_the_closed_form(problem, tmp_path, registry):
    net, x, y, w, b = problem
    run = robench.evaluate(net, x, y, ["torchattacks.FGSM"], EPSILONS, name="linear",
                           out=tmp_path / "run", report=("md",), device="cpu",
                           registry=registry)
    df = run.results
    assert list(df.columns)[:len(RESULT_COLUMNS)] == list(RESULT_COLUMNS)
    assert len(df) == len(EPSILONS) * len(x) and set(df["model"]) == {"linear"}
    accuracy = df.groupby("epsilon")["correct_adv"].mean()
    expected = [closed_form_accuracy(x, y, w, b, eps) for eps in EPSILONS]
    np.testing.assert_allclose(accuracy.to_numpy(), expected)
    clean = run.metrics.query("metric == 'clean_accuracy'")["value"]
    assert clean.iloc[0] == pytest.approx(expected[0])
    assert (tmp_path / "run" / "report.md").is_file()


def test_the_users_module_is_left_as_it_was(problem, tmp_path, registry):
    net, x, y, *_ = problem
    net.train()
    robench.evaluate(net, x[:10], y[:10], ["torchattacks.FGSM"], [0.1], out=tmp_path,
                     device="cpu", registry=registry)
    assert net.training and all(p.requires_grad for p in net.parameters())


def test_calling_again_resumes_and_another_model_recomputes(problem, tmp_path, registry):
    net, x, y, *_ = problem
    args = dict(out=tmp_path, device="cpu", registry=registry)
    first = robench.evaluate(net, x, y, ["torchattacks.FGSM"], [0.1], **args).results
    again = robench.evaluate(net, x, y, ["torchattacks.FGSM"], [0.1], **args)
    assert again.results.equals(first)
    other = nn.Linear(5, 2)
    with torch.no_grad():
        other.weight.copy_(-net.weight)
        other.bias.copy_(-net.bias)
    flipped = robench.evaluate(other, x, y, ["torchattacks.FGSM"], [0.1], **args).results
    assert (flipped["pred_clean"].to_numpy() == 1 - first["pred_clean"].to_numpy()).all()


def test_attack_tables_take_their_own_options_and_epsilons(problem, tmp_path, registry):
    net, x, y, *_ = problem
    attacks = [{"name": "pgd", "attack": "torchattacks.PGD", "steps": 3, "alpha": "1/40",
                "epsilons": ["1/20"]},
               "torchattacks.FGSM"]
    run = robench.evaluate(net, x[:30], y[:30], attacks, [0.1], out=tmp_path, device="cpu",
                           metrics={"robust_accuracy": {}}, registry=registry)
    eps = run.results.groupby("attack")["epsilon"].unique()
    assert eps["pgd"].tolist() == [0.05] and eps["torchattacks.FGSM"].tolist() == [0.1]
    assert "robust_accuracy" in set(run.metrics["metric"])


@pytest.mark.parametrize("call, error, message", [
    (lambda net, x, y: robench.evaluate(net, x, y[:3], ["torchattacks.FGSM"], [0.1]),
     ValueError, "one label per input"),
    (lambda net, x, y: robench.evaluate(net, x, y, ["torchattacks.FGSM"]),
     ValueError, "no epsilons"),
    (lambda net, x, y: robench.evaluate(net, x, y, ["torchattacks.FSGM"], [0.1]),
     ConfigError, "FGSM"),
])
def test_errors(problem, call, error, message):
    net, x, y, *_ = problem
    with pytest.raises(error, match=message):
        call(net, x[:5], y[:5])
