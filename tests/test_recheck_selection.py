"""Tests of the host's re-check (robench.evaluation): selection.

A minimal attack's thresholded sweep is judged once (its candidates and the clean inputs
measured and predicted once, each eps choosing between them) only when that gives the
rows the per-eps re-check would; these tests state by hand which sweeps qualify, what
the selection records for every threat model, and what the prediction helpers return
for no inputs at all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robench import AttackResult, ThreatModel
from robench.attack_runtime import ThresholdedSweep
from robench.evaluation import _Recheck, _Selection, classes, predict, result_rows


def larger_feature() -> nn.Module:
    """Logits equal to the two input features: the prediction is the larger one."""
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
    return net


def sum_against_threshold() -> nn.Module:
    """Four features: logit 0 is their sum, logit 1 is 0.75 (class 0 once the sum
    exceeds 0.75)."""
    net = nn.Linear(4, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        net.bias.copy_(torch.tensor([0.0, 0.75]))
    return net


def rows_of(model, x, y, adversarials, epsilons, *, threat_model, bounds):
    """The rows of ``result_rows`` for one AttackResult on ``x`` (untargeted)."""
    result = AttackResult(epsilons=list(epsilons), adversarials=adversarials)
    rows, _ = result_rows(model, result, x, y, np.arange(len(x)), None,
                          threat_model=threat_model, bounds=bounds,
                          num_classes=2, batch_size=2, device="cpu", examples=0)
    return rows


def recheck(x, *, bounds=(0.0, 1.0), threat_model=ThreatModel.LINF):
    """The host's re-check of adversarials of ``x`` on the two-feature model (in the
    inputs' floating type)."""
    return _Recheck(x, threat_model, bounds, int(np.prod(x.shape[1:])),
                    larger_feature().to(x.dtype), 2, "cpu")


X = torch.tensor([[0.6, 0.4], [0.3, 0.7]])
CANDIDATES = torch.tensor([[0.4, 0.6], [0.7, 0.3]])


def sweep_of(inputs, candidates=CANDIDATES, epsilons=(0.1, 0.3)):
    """A thresholded sweep whose attack found both candidates at distance 0.2."""
    return ThresholdedSweep(inputs, candidates, torch.full((len(candidates),), 0.2),
                            list(epsilons))


# ------------------------------------------------------------ no inputs, no rows

def test_classes_of_no_rows_is_an_empty_long_vector():
    """No logits (as the batched forward pass gives for no inputs: shape (0, 0)) have
    no classes: an empty int64 vector, where ``argmax`` of a (0, 0) tensor fails."""
    for out in (torch.empty(0, 0), torch.empty(0, 3)):
        got = classes(out)
        assert got.shape == (0,)
        assert got.dtype == torch.int64
        assert got.device == out.device


def test_predict_on_no_inputs_gives_empty_columns_of_the_usual_types():
    """No inputs: prediction, confidence and margin are empty vectors with the types
    of a non-empty prediction (int64 classes, float32 softmax values)."""
    empty = predict(larger_feature(), torch.empty(0, 2), 2, "cpu")
    some = predict(larger_feature(), X, 2, "cpu")
    assert len(empty) == 3
    for got, usual in zip(empty, some):
        assert got.shape == (0,)
        assert got.dtype == usual.dtype
    assert [t.dtype for t in empty] == [torch.int64, torch.float32, torch.float32]


def test_an_empty_sweep_gives_no_rows():
    """A sweep over no budgets (an attack's empty list of adversarials) gives an empty
    table with the usual columns, not an error and not a row."""
    rows = rows_of(larger_feature(), X, torch.tensor([0, 1]), [], [],
                   threat_model=ThreatModel.LINF, bounds=(0.0, 1.0))
    assert len(rows) == 0
    assert {"epsilon", "pred_adv", "distance", "within_budget"} <= set(rows.columns)


# ------------------------------------------------- which sweeps are judged once

def test_a_sweep_of_exactly_the_finite_float32_inputs_is_judged_once():
    """Candidates shaped like the inputs, the sweep's inputs equal to the host's, and
    those float32, finite and within the bounds: the sweep is judged once."""
    assert isinstance(recheck(X).thresholded(sweep_of(X.clone())), _Selection)
    unbounded = recheck(X, bounds=(-math.inf, math.inf))
    assert isinstance(unbounded.thresholded(sweep_of(X.clone())), _Selection)


def test_a_plain_list_of_adversarials_is_read_per_eps():
    assert recheck(X).thresholded([CANDIDATES, CANDIDATES]) is None


def test_candidates_shaped_unlike_the_inputs_are_read_per_eps():
    """Same inputs, candidates with a third feature: not judged once."""
    wide = torch.cat([CANDIDATES, torch.zeros(2, 1)], 1)
    assert recheck(X).thresholded(sweep_of(X.clone(), wide)) is None


def test_a_sweep_of_other_inputs_is_read_per_eps():
    """The sweep started from other inputs than the host's: its clean choices are not
    the host's clean inputs."""
    assert recheck(X).thresholded(sweep_of(X.flip(0))) is None


def test_float64_inputs_are_read_per_eps():
    """Float64 inputs (within the bounds): the host measures float32 adversarials, the
    clean inputs would not be their own float32 copies."""
    x = X.double()
    assert recheck(x).thresholded(sweep_of(x.clone())) is None


def test_inputs_outside_the_bounds_are_read_per_eps():
    """A float32 input outside the bounds: the per-eps re-check clips the unchosen
    input, so a clean row would not have distance 0."""
    x = torch.tensor([[1.5, 0.4], [0.3, 0.7]])
    assert recheck(x).thresholded(sweep_of(x.clone())) is None


def test_inputs_that_are_not_finite_are_read_per_eps():
    x = torch.tensor([[math.nan, 0.4], [0.3, 0.7]])
    assert recheck(x, bounds=(-math.inf, math.inf)).thresholded(sweep_of(x.clone())) is None


def test_a_sweep_of_inputs_outside_the_bounds_gives_the_per_eps_rows():
    """Rows of a thresholded sweep on an input outside the bounds equal those of the same
    adversarials given as a list. By hand: [1.5, 0.4] is clipped to [1.0, 0.4] (linf
    distance 0.5, over the budget 0.1: the clean prediction 0 stands); at eps 0.3 both
    take their candidates, [0.4, 0.6] (distance 1.1 from [1.5, 0.4]) and [0.7, 0.3]
    (distance 0.4), both over budget, so the clean predictions stand."""
    x = torch.tensor([[1.5, 0.4], [0.3, 0.7]])
    y = torch.tensor([0, 1])
    sweep = sweep_of(x.clone())
    kw = {"threat_model": ThreatModel.LINF, "bounds": (0.0, 1.0)}
    judged = rows_of(larger_feature(), x, y, sweep, sweep.epsilons, **kw)
    listed = rows_of(larger_feature(), x, y, [sweep[i] for i in range(2)], sweep.epsilons,
                     **kw)
    assert judged["distance"].tolist() == pytest.approx([0.5, 0.0, 1.1, 0.4])
    assert judged["within_budget"].tolist() == [False, True, False, False]
    assert judged["pred_adv"].tolist() == [0, 1, 0, 1]
    for column in ("distance", "within_budget", "pred_adv", "confidence", "margin"):
        np.testing.assert_array_equal(judged[column].to_numpy(), listed[column].to_numpy())


# ------------------------------------------------------- what a selection records

def test_l0_selection_uses_the_half_feature_tolerance():
    """L0 on four features: a budget admits up to eps + 0.5 / 4 of them changed. The
    first candidate changes 2 of 4 features (0.5), the second 1 of 4 (0.25); both are
    chosen from eps 0.3 on (the attack's own distance 0.1). At eps 0.3 the first is
    over budget (0.5 > 0.425) and the clean prediction 1 stands; at eps 0.4 both count
    (0.5 <= 0.525) and the sum of features, above 0.75, predicts class 0."""
    x = torch.zeros(2, 4)
    candidates = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    sweep = ThresholdedSweep(x.clone(), candidates, torch.tensor([0.1, 0.1]),
                             [0.0, 0.3, 0.4])
    rows = rows_of(sum_against_threshold(), x, torch.tensor([1, 1]), sweep,
                   sweep.epsilons, threat_model=ThreatModel.L0, bounds=(0.0, 1.0))
    assert rows["distance"].tolist() == [0.0, 0.0, 0.5, 0.25, 0.5, 0.25]
    assert rows["within_budget"].tolist() == [True, True, False, True, True, True]
    assert rows["pred_adv"].tolist() == [1, 1, 1, 0, 0, 0]
    assert rows["success"].tolist() == [False, False, False, True, True, True]


def test_unbounded_selection_counts_every_distance():
    """Unbounded threat model, unbounded data: a candidate 5 away (linf) counts at a
    budget of 0.1, its prediction (the larger feature, 0) stands."""
    x = torch.tensor([[0.0, 1.0]])
    candidate = torch.tensor([[5.0, -4.0]])
    sweep = ThresholdedSweep(x.clone(), candidate, torch.tensor([0.0]), [0.1])
    rows = rows_of(larger_feature(), x, torch.tensor([1]), sweep, sweep.epsilons,
                   threat_model=ThreatModel.UNBOUNDED, bounds=(-math.inf, math.inf))
    assert rows["distance"].tolist() == [5.0]
    assert rows["within_budget"].tolist() == [True]
    assert rows["pred_adv"].tolist() == [0]


def test_half_open_bounds_clip_the_finite_side():
    """Data bounded on one side only, (0, inf): an adversarial value below 0 is clipped
    to 0 before its distance is measured (0.5 - 0 = 0.5, not 0.5 - (-1) = 1.5), and a
    large value above is kept."""
    x = torch.tensor([[0.5, 0.5]])
    adv, dist, finite, *_ = recheck(x, bounds=(0.0, math.inf)).measure(
        torch.tensor([[-1.0, 9.0]]))
    assert adv.tolist() == [[0.0, 9.0]]
    assert dist.tolist() == [8.5]
    assert finite.tolist() == [True]
    adv, dist, *_ = recheck(x, bounds=(0.0, math.inf)).measure(torch.tensor([[-1.0, 0.5]]))
    assert adv.tolist() == [[0.0, 0.5]] and dist.tolist() == [0.5]
