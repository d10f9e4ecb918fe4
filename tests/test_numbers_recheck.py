"""The host's re-check of attack outputs (robench.evaluation) against hand computations.

Every expected number is derived by hand from a two-feature linear model whose
prediction is the larger feature, so a one-line slip in the re-check (a tolerance, a
clip, a kept prediction) changes a value these tests state explicitly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robench import AttackResult, ThreatModel
from robench.evaluation import (
    check_predictions,
    distances,
    logits,
    predict,
    result_rows,
    within_budget,
)


def larger_feature() -> nn.Module:
    """Logits equal to the two input features: the prediction is the larger one."""
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
    return net


def recheck(x, y, adversarials, epsilons, *, threat_model=ThreatModel.LINF,
            bounds=(0.0, 1.0), targets=None, examples=0, **fields):
    """Rows and example arrays of ``result_rows`` for one AttackResult on ``x``."""
    result = AttackResult(epsilons=list(epsilons), adversarials=adversarials, **fields)
    return result_rows(larger_feature(), result, x, y, np.arange(len(x)), targets,
                       threat_model=threat_model, bounds=bounds, num_classes=2,
                       batch_size=2, device="cpu", examples=examples)


X = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
Y = torch.tensor([0, 1, 0])  # the third input is misclassified when clean


# --------------------------------------------------------------- the named one-line bugs

def test_over_budget_adversarial_keeps_the_clean_prediction():
    """Bug: an over-budget adversarial keeps its own prediction instead of the clean one.

    [0.6, 0.4] -> [0.4, 0.6] moves each feature by 0.2: within eps = 0.25 it flips the
    prediction to 1, beyond eps = 0.1 it is rejected and the clean prediction 0 stands."""
    adv = torch.tensor([[0.4, 0.6]])
    rows, _ = recheck(X[:1], Y[:1], [adv, adv], [0.1, 0.25])
    assert rows["within_budget"].tolist() == [False, True]
    assert rows["pred_adv"].tolist() == [0, 1]
    assert rows["correct_adv"].tolist() == [True, False]
    assert rows["success"].tolist() == [False, True]
    assert math.isnan(rows["confidence"].iloc[0]) and math.isnan(rows["margin"].iloc[0])
    # softmax of logits (0.4, 0.6): p1 = 1 / (1 + e^-0.2), margin p1 - p0 = tanh(0.1)
    assert rows["confidence"].iloc[1] == pytest.approx(1 / (1 + math.exp(-0.2)), rel=1e-6)
    assert rows["margin"].iloc[1] == pytest.approx(math.tanh(0.1), rel=1e-5)


def test_linf_tolerance_is_float32_rounding_not_one_percent():
    """Bug: the Linf tolerance raised to 1e-2 accepts perturbations 0.005 over budget.

    At eps = 0.1, a perturbation of 0.105 is over budget, one of 0.1 + 2e-6 (float32
    rounding of x + eps) is within it, and one of 0.1 + 5e-5 is not."""
    x = torch.tensor([[0.5, 0.25]] * 3)
    adv = x.clone()
    adv[:, 1] += torch.tensor([0.105, 0.1 + 2e-6, 0.1 + 5e-5])
    rows, _ = recheck(x, torch.zeros(3, dtype=torch.long), [adv], [0.1])
    assert rows["within_budget"].tolist() == [False, True, False]


def test_adversarials_are_clipped_to_the_data_bounds():
    """Bug: adversarials not clipped to the data bounds before the re-check.

    [0.6, 0.4] -> [0.6, 1.3] clips to [0.6, 1.0]: distance 0.6 (not 0.9), within eps = 0.6,
    and the clipped input is predicted 1 (1.0 > 0.6)."""
    adv = torch.tensor([[0.6, 1.3]])
    rows, arrays = recheck(X[:1], Y[:1], [adv], [0.6], examples=1)
    assert rows["distance"].iloc[0] == pytest.approx(0.6, abs=1e-6)
    assert rows["within_budget"].tolist() == [True]
    assert rows["pred_adv"].tolist() == [1]
    np.testing.assert_allclose(arrays["adversarial"][0, 0], [0.6, 1.0], atol=1e-7)


def test_unbounded_data_is_not_clipped():
    """With infinite bounds the adversarial is measured as returned."""
    adv = torch.tensor([[0.6, 1.3]])
    rows, _ = recheck(X[:1], Y[:1], [adv], [1.0], bounds=(-math.inf, math.inf))
    assert rows["distance"].iloc[0] == pytest.approx(0.9, abs=1e-6)


def test_success_needs_an_adversarial_within_budget():
    """Bug: ``success`` not restricted to within-budget rows. The misclassified input
    [0.45, 0.55] with an over-budget adversarial is not a success of the attack."""
    adv = torch.tensor([[0.45, 0.95]])
    rows, _ = recheck(X[2:], Y[2:], [adv], [0.1])
    assert rows["within_budget"].tolist() == [False]
    assert rows["pred_adv"].tolist() == [1] and rows["correct_clean"].tolist() == [False]
    assert rows["success"].tolist() == [False]


def test_untargeted_success_is_judged_against_the_label():
    """Bug: untargeted success judged against the clean prediction instead of the label.
    [0.45, 0.55] (label 0, predicted 1) -> [0.55, 0.45] moves the prediction back to
    its label: no success; left unchanged it is misclassified: a success."""
    flipped = torch.tensor([[0.55, 0.45]])
    rows, _ = recheck(X[2:], Y[2:], [X[2:].clone(), flipped], [0.0, 0.25])
    assert rows["pred_adv"].tolist() == [1, 0]
    assert rows["success"].tolist() == [True, False]
    assert rows["correct_adv"].tolist() == [False, True]


# --------------------------------------------------------------- distances and budgets

def test_distances_match_hand_computed_norms():
    """delta = (3, -4, 0, 0): linf 4, l2 5, l1 7, l0 2 of 4 values = 0.5."""
    delta = torch.tensor([[3.0, -4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    expected = {ThreatModel.LINF: [4, 0], ThreatModel.UNBOUNDED: [4, 0],
                ThreatModel.L2: [5, 0], ThreatModel.L1: [7, 0], ThreatModel.L0: [0.5, 0]}
    for threat_model, values in expected.items():
        assert distances(delta, threat_model).tolist() == pytest.approx(values)


def test_distances_of_inputs_without_features_are_zero():
    assert distances(torch.empty(3, 0), ThreatModel.LINF).tolist() == [0, 0, 0]


@pytest.mark.parametrize("threat_model", [ThreatModel.L2, ThreatModel.L1])
def test_norm_budgets_allow_a_relative_tolerance_of_1e4(threat_model):
    """l1/l2: eps * (1 + 1e-4) + 1e-6 is the largest accepted distance."""
    eps = 2.0
    dist = torch.tensor([eps, eps * (1 + 5e-5), eps * (1 + 2e-4), eps * (1 + 1e-3)])
    assert within_budget(dist, eps, threat_model, 4).tolist() == [True, True, False, False]
    # at eps = 0 only the absolute part (1e-6) is left
    assert within_budget(torch.tensor([5e-7, 3e-6]), 0.0, threat_model, 4).tolist() == [
        True, False]


def test_l0_budget_is_a_fraction_with_half_a_value_of_slack():
    """Of 4 values, eps = 0.5 allows 2 changed values, not 3 (0.75 > 0.5 + 0.125)."""
    dist = torch.tensor([0.25, 0.5, 0.75, 1.0])
    assert within_budget(dist, 0.5, ThreatModel.L0, 4).tolist() == [True, True, False, False]
    # with 2 values, 0.5 + 1/4 = 0.75 still refuses changing both
    assert within_budget(torch.tensor([0.5, 1.0]), 0.5, ThreatModel.L0, 2).tolist() == [
        True, False]


def test_linf_budget_boundary():
    eps = 0.25
    dist = torch.tensor([eps, eps + 5e-6, eps + 2e-5, eps + 1e-3])
    assert within_budget(dist, eps, ThreatModel.LINF, 2).tolist() == [True, True, False, False]


def test_budgets_include_their_tolerance_boundary():
    """A distance equal to the largest accepted one (in float32) is within budget."""
    from robench.evaluation import LINF_TOL, NORM_RTOL

    cases = [(ThreatModel.LINF, 0.25 + LINF_TOL), (ThreatModel.L0, 0.25 + 0.5 / 4),
             (ThreatModel.L2, 0.25 * (1 + NORM_RTOL) + 1e-6),
             (ThreatModel.L1, 0.25 * (1 + NORM_RTOL) + 1e-6)]
    for threat_model, largest in cases:
        assert within_budget(torch.tensor([largest]), 0.25, threat_model, 4).tolist() == [
            True], threat_model


def test_rows_use_the_attacks_threat_model_and_the_input_size():
    """Linf at eps = 1: 1 + 5e-5 is over budget (a relative l2 tolerance would accept
    it). L0 on 2 values at eps = 0.5: one changed value is within, two are not."""
    x = torch.zeros(1, 2)
    rows, _ = recheck(x, torch.tensor([0]), [torch.tensor([[1.00005, 0.0]])], [1.0],
                      bounds=(-math.inf, math.inf))
    assert rows["within_budget"].tolist() == [False]
    x = torch.tensor([[0.75, 0.25], [0.75, 0.25]])
    adv = torch.tensor([[0.75, 0.875], [0.125, 0.875]])
    rows, _ = recheck(x, torch.tensor([0, 0]), [adv], [0.5], threat_model=ThreatModel.L0)
    assert rows["distance"].tolist() == [0.5, 1.0]
    assert rows["within_budget"].tolist() == [True, False]
    assert rows["pred_adv"].tolist() == [1, 0]


def test_unbounded_threat_model_accepts_every_distance():
    dist = torch.tensor([0.0, 10.0, 1e9])
    assert within_budget(dist, 0.0, ThreatModel.UNBOUNDED, 2).tolist() == [True] * 3


def test_l2_rows_measure_the_euclidean_distance():
    """[0.6, 0.4] -> [0.3, 0.8]: l2 distance 0.5 (3-4-5), within 0.5, not within 0.4."""
    adv = torch.tensor([[0.3, 0.8]])
    rows, _ = recheck(X[:1], Y[:1], [adv, adv], [0.4, 0.5], threat_model=ThreatModel.L2)
    assert rows["distance"].tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    assert rows["within_budget"].tolist() == [False, True]
    assert rows["pred_adv"].tolist() == [0, 1]


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_adversarials_are_rejected_even_unbounded(value):
    adv = torch.tensor([[value, 0.9]])
    rows, _ = recheck(X[:1], Y[:1], [adv], [1.0], threat_model=ThreatModel.UNBOUNDED,
                      bounds=(-math.inf, math.inf))
    assert rows["within_budget"].tolist() == [False]
    assert rows["pred_adv"].tolist() == [0] and rows["success"].tolist() == [False]


def test_a_non_finite_input_does_not_disturb_its_neighbours():
    """Only the non-finite row is replaced by its clean input before predicting."""
    adv = torch.tensor([[math.nan, 0.9], [0.9, 0.1]])
    rows, _ = recheck(X[:2], Y[:2], [adv], [1.0], threat_model=ThreatModel.UNBOUNDED,
                      bounds=(-math.inf, math.inf))
    assert rows["within_budget"].tolist() == [False, True]
    assert rows["pred_adv"].tolist() == [0, 0]
    assert rows["success"].tolist() == [False, True]


# --------------------------------------------------------------- predictions

def test_predict_gives_softmax_confidence_and_top_two_margin_in_batches():
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.5]])
    pred, conf, margin = predict(larger_feature(), x, 2, "cpu")
    assert pred.tolist() == [0, 1, 1]
    expected = [1 / (1 + math.exp(-d)) for d in (2.0, 1.0, 0.5)]
    assert conf.tolist() == pytest.approx(expected, rel=1e-6)
    assert margin.tolist() == pytest.approx([2 * p - 1 for p in expected], rel=1e-5)


def test_predict_with_a_single_class_has_margin_equal_to_confidence():
    net = nn.Linear(2, 1)
    pred, conf, margin = predict(net, torch.rand(3, 2), 2, "cpu")
    assert pred.tolist() == [0, 0, 0]
    assert conf.tolist() == [1.0] * 3 and margin.tolist() == [1.0] * 3


def test_logits_are_concatenated_over_batches():
    x = torch.rand(5, 2)
    out = logits(larger_feature(), x, 2, "cpu")
    torch.testing.assert_close(out, x)
    assert logits(larger_feature(), x[:0], 2, "cpu").shape == (0, 0)


# --------------------------------------------------------------- predictions-only results

def test_predictions_only_results_use_the_attacks_numbers_and_the_budget():
    preds = torch.tensor([[0, 1, 1], [1, 1, 0]])
    dists = torch.tensor([[0.0, 0.05, 0.3], [0.2, 0.0, 0.1]])
    rows, arrays = recheck(X, Y, None, [0.1, 0.2], predictions=preds, distances=dists)
    assert rows["epsilon"].tolist() == [0.1] * 3 + [0.2] * 3
    assert rows["sample"].tolist() == [0, 1, 2] * 2
    assert rows["pred_adv"].tolist() == [0, 1, 1, 1, 1, 0]
    assert rows["within_budget"].tolist() == [True, True, False, True, True, True]
    assert rows["success"].tolist() == [False, False, False, True, False, False]
    assert rows["distance"].tolist() == pytest.approx([0, 0.05, 0.3, 0.2, 0, 0.1])
    assert rows["confidence"].isna().all() and rows["margin"].isna().all()
    assert arrays == {}


@pytest.mark.parametrize("pred, dist, message", [
    (2, 0.0, "predicted class 2 at eps=0.1; classes are 0..1"),
    (-1, 0.0, "predicted class -1"),
    (0, -0.5, "reported distance -0.5 at eps=0.1"),
    (0, math.nan, "reported distance nan"),
    (0, math.inf, "reported distance inf"),
])
def test_predictions_only_results_are_checked(pred, dist, message):
    with pytest.raises(ValueError, match=message):
        check_predictions(torch.tensor([1, pred]), torch.tensor([0.0, dist]), 2, 0.1)
    check_predictions(torch.tensor([0, 1]), torch.tensor([0.0, 3.0]), 2, 0.1)


def test_predictions_only_results_are_checked_at_their_budget():
    with pytest.raises(ValueError, match="predicted class 5 at eps=0.25;"):
        recheck(X, Y, None, [0.25], predictions=torch.tensor([[0, 5, 1]]),
                distances=torch.zeros(1, 3))


def test_predictions_only_budgets_follow_the_threat_model_and_input_size():
    """Linf at eps = 1: a reported 1 + 5e-5 is over budget; L0 on 2 values at eps = 0.5:
    a reported 1.0 (both values) is over budget, 0.5 is within."""
    preds = torch.tensor([[1, 1, 1]])
    rows, _ = recheck(X, Y, None, [1.0], predictions=preds,
                      distances=torch.tensor([[1.0, 1.00005, 0.0]]))
    assert rows["within_budget"].tolist() == [True, False, True]
    rows, _ = recheck(X, Y, None, [0.5], predictions=preds, threat_model=ThreatModel.L0,
                      distances=torch.tensor([[0.5, 1.0, 0.0]]))
    assert rows["within_budget"].tolist() == [True, False, True]


def test_a_result_needs_adversarials_or_predictions_and_distances():
    with pytest.raises(ValueError, match="^an AttackResult needs adversarials, or "
                                         "predictions and distances$"):
        recheck(X, Y, None, [0.1], predictions=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(3, 3\) for inputs of shape \(3, 2\) at "
                                         r"eps=0.1"):
        recheck(X, Y, [torch.zeros(3, 3)], [0.1])


# --------------------------------------------------------------- frame layout

def test_rows_are_eps_major_with_labels_and_clean_predictions():
    adv = X.clone()
    rows, _ = recheck(X, Y, [X.clone(), adv], [0.0, 0.1])
    assert rows["epsilon"].tolist() == [0.0] * 3 + [0.1] * 3
    assert rows["sample"].tolist() == [0, 1, 2, 0, 1, 2]
    assert rows["label"].tolist() == [0, 1, 0] * 2
    assert rows["pred_clean"].tolist() == [0, 1, 1] * 2
    assert rows["correct_clean"].tolist() == [True, True, False] * 2
    assert rows["source"].unique().tolist() == ["data"]
    assert rows["target"].isna().all()
    assert rows["distance"].tolist() == [0.0] * 6


def test_row_columns_have_the_stored_types():
    """Whatever the types of the inputs (integer budgets, int32 sample indices)."""
    result = AttackResult(epsilons=[0, 1], adversarials=[X.clone(), X.clone()])
    rows, _ = result_rows(larger_feature(), result, X, Y, np.arange(3, dtype="int32"),
                          torch.tensor([1, 0, 0]), threat_model=ThreatModel.LINF,
                          bounds=(0.0, 1.0), num_classes=2, batch_size=2, device="cpu")
    expected = {"epsilon": "float64", "sample": "int64", "target": "Int64", "label": "Int64",
                "pred_clean": "int64", "pred_adv": "int64", "distance": "float64",
                "confidence": "float32", "margin": "float32", "within_budget": "bool",
                "correct_clean": "bool", "correct_adv": "bool", "success": "bool"}
    assert {c: str(rows[c].dtype) for c in expected} == expected
    rows, _ = recheck(X, Y, None, [0.1], predictions=torch.zeros(1, 3, dtype=torch.long),
                      distances=torch.zeros(1, 3))
    assert {c: str(rows[c].dtype) for c in expected} == expected


def test_targeted_success_means_reaching_the_target():
    """Targets (1, 1): the first input reaches class 1, the second stays at 1 (its label)
    and counts as reaching the target too; a non-target change is no success."""
    adv = torch.tensor([[0.4, 0.6], [0.3, 0.7], [0.45, 0.55]])
    rows, _ = recheck(X, Y, [adv], [0.5], targets=torch.tensor([1, 1, 0]))
    assert rows["target"].tolist() == [1, 1, 0]
    assert rows["success"].tolist() == [True, True, False]


def test_generated_inputs_without_labels_succeed_by_changing_the_prediction():
    """Inputs of the attack itself (labels -1): success = the prediction moved; no label,
    so neither clean nor adversarial correctness."""
    inputs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    adv = torch.tensor([[0.1, 0.9], [0.1, 0.9]])
    rows, arrays = recheck(X, Y, [adv], [1.0], inputs=inputs, source="noise", examples=1)
    assert rows["sample"].tolist() == [0, 1]
    assert rows["source"].tolist() == ["noise", "noise"]
    assert rows["label"].isna().all()
    assert rows["pred_clean"].tolist() == [0, 1]
    assert rows["success"].tolist() == [True, False]
    assert rows["correct_clean"].tolist() == [False, False]
    assert rows["correct_adv"].tolist() == [False, False]
    np.testing.assert_allclose(arrays["clean"], inputs[:1].numpy())
    assert arrays["labels"].tolist() == [-1]


def test_generated_inputs_carry_their_own_targets():
    inputs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    adv = torch.tensor([[0.1, 0.9], [0.1, 0.9]])
    rows, _ = recheck(X, Y, [adv], [1.0], inputs=inputs, labels=torch.tensor([0, 0]))
    assert rows["label"].tolist() == [0, 0]
    result = AttackResult(epsilons=[1.0], adversarials=[adv], inputs=inputs,
                          targets=torch.tensor([1, 0]))
    rows, arrays = result_rows(larger_feature(), result, X, Y, np.arange(3),
                               torch.tensor([0, 0, 0]), threat_model=ThreatModel.LINF,
                               bounds=(0.0, 1.0), num_classes=2, batch_size=2,
                               device="cpu", examples=2)
    assert rows["target"].tolist() == [1, 0]
    assert rows["success"].tolist() == [True, False]
    assert arrays["targets"].tolist() == [1, 0]


def test_example_arrays_keep_the_first_inputs_at_every_eps():
    adv = torch.tensor([[0.4, 0.6], [0.3, 0.7], [0.45, 0.55]])
    rows, arrays = recheck(X, Y, [X.clone(), adv], [0.0, 0.5], examples=2)
    assert arrays["adversarial"].shape == (2, 2, 2)
    np.testing.assert_allclose(arrays["adversarial"][1], adv[:2].numpy())
    np.testing.assert_allclose(arrays["adversarial"][0], X[:2].numpy())
    assert arrays["pred_adv"].tolist() == [[0, 1], [1, 1]]
    assert arrays["epsilons"].tolist() == [0.0, 0.5]
    np.testing.assert_allclose(arrays["clean"], X[:2].numpy())
    assert arrays["labels"].tolist() == [0, 1]
    assert "targets" not in arrays
    _, arrays = recheck(X, Y, [X.clone(), adv], [0, 1], examples=1)
    assert arrays["epsilons"].dtype == np.float64
    _, none = recheck(X, Y, [adv], [0.5], examples=0)
    assert none == {}


def test_eight_examples_are_kept_by_default():
    x = torch.rand(10, 2)
    result = AttackResult(epsilons=[0.0], adversarials=[x.clone()])
    _, arrays = result_rows(larger_feature(), result, x, torch.zeros(10, dtype=torch.long),
                            np.arange(10), None, threat_model=ThreatModel.LINF,
                            bounds=(0.0, 1.0), num_classes=2, batch_size=4, device="cpu")
    assert arrays["adversarial"].shape == (1, 8, 2) and arrays["labels"].shape == (8,)


def test_stored_examples_of_a_predictions_only_attack():
    preds = torch.tensor([[1, 1, 0]])
    stored = torch.rand(1, 2, 2)
    _, arrays = recheck(X, Y, None, [0.1], predictions=preds,
                        distances=torch.zeros(1, 3), details={"examples": stored},
                        examples=8)
    np.testing.assert_allclose(arrays["adversarial"], stored.numpy())
    assert arrays["pred_adv"].tolist() == [[1, 1]]
    np.testing.assert_allclose(arrays["clean"], X[:2].numpy())
    _, arrays = recheck(X, Y, None, [0.1], predictions=preds,
                        distances=torch.zeros(1, 3), details={"examples": stored},
                        examples=1)
    assert arrays["adversarial"].shape == (1, 1, 2) and arrays["labels"].tolist() == [0]
    # an attack that kept fewer inputs than asked for: as many clean ones
    _, arrays = recheck(X, Y, None, [0.1], predictions=preds,
                        distances=torch.zeros(1, 3), details={"examples": stored[:, :1]},
                        examples=8)
    assert arrays["clean"].shape == (1, 2) and arrays["pred_adv"].tolist() == [[1]]
    _, arrays = recheck(X, Y, None, [0.1], predictions=preds,
                        distances=torch.zeros(1, 3), details={"examples": stored[0]})
    assert arrays == {}
    _, arrays = recheck(X, Y, None, [0.1], predictions=preds,
                        distances=torch.zeros(1, 3), details={"examples": stored},
                        examples=0)
    assert arrays == {}
    _, arrays = recheck(X, Y, None, [0.1], predictions=preds,
                        distances=torch.zeros(1, 3), examples=2)
    assert arrays == {}
