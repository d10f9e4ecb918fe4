"""The host's re-check of attack outputs (robench.evaluation), against hand computations,
and the training loop's refusal of non-finite numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robench import AttackResult, ThreatModel
from robench.components import DataInfo, Defense, LoadedData, Model, TrainingContext
from robench.config import TrainingSpec
from robench.evaluation import LINF_TOL, result_rows
from robench.training import NonFiniteTraining, train


def _model() -> nn.Module:
    """Logits (0, x0 - 0.5): class 1 iff the first feature exceeds 0.5."""
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        net.bias.copy_(torch.tensor([0.0, -0.5]))
    return net


X = torch.tensor([[0.45, 0.5], [0.45, 0.5], [0.55, 0.5], [0.2, 0.5]])
Y = torch.tensor([0, 0, 1, 0])


def _rows(adversarials, eps, threat_model=ThreatModel.LINF, bounds=(0.0, 1.0)):
    result = AttackResult(epsilons=[eps], adversarials=[adversarials])
    rows, _ = result_rows(_model(), result, X, Y, np.arange(len(X)), None,
                          threat_model=threat_model, bounds=bounds, num_classes=2,
                          batch_size=2, device="cpu", examples=0)
    return rows


def test_within_budget_moves_the_prediction_beyond_it_keeps_the_clean_one():
    eps = 0.1
    adv = X.clone()
    adv[0, 0] += eps  # 0.55: crosses the boundary within budget
    adv[1, 0] += eps + 10 * LINF_TOL  # crosses it, but over budget
    adv[2, 0] -= eps  # 0.45: crosses it the other way, within budget
    rows = _rows(adv, eps)
    assert rows["within_budget"].tolist() == [True, False, True, True]
    assert rows["pred_clean"].tolist() == [0, 0, 1, 0]
    assert rows["pred_adv"].tolist() == [1, 0, 0, 0]
    assert rows["success"].tolist() == [True, False, True, False]
    np.testing.assert_allclose(rows["distance"], [eps, eps + 10 * LINF_TOL, eps, 0],
                               rtol=1e-5, atol=1e-7)


def test_the_linf_tolerance_is_float32_rounding_only():
    eps = 0.1
    adv = X.clone()
    adv[0, 0] += eps + LINF_TOL / 2
    adv[1, 0] += eps + 3 * LINF_TOL
    rows = _rows(adv, eps)
    assert rows["within_budget"].tolist()[:2] == [True, False]


def test_adversarials_are_clipped_to_the_data_bounds_before_measuring():
    adv = X.clone()
    adv[3, 0] = -0.5  # 0.7 below the input, but only 0.2 inside the bounds
    rows = _rows(adv, 0.2)
    assert rows["distance"].iat[3] == pytest.approx(0.2)
    assert bool(rows["within_budget"].iat[3])


@pytest.mark.parametrize("threat_model", [ThreatModel.UNBOUNDED, ThreatModel.LINF,
                                          ThreatModel.L2])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_adversarials_are_rejected(threat_model, value):
    adv = X.clone()
    adv[0, 1] = value
    rows = _rows(adv, 1.0, threat_model, bounds=(-float("inf"), float("inf")))
    assert rows["within_budget"].tolist() == [False, True, True, True]
    assert not rows["success"].iat[0] and rows["pred_adv"].iat[0] == rows["pred_clean"].iat[0]
    assert np.isnan(rows["confidence"].iat[0])


@pytest.mark.parametrize("pred, dist, message", [
    (2, 0.1, "predicted class 2"), (-1, 0.1, "predicted class -1"),
    (0, -0.1, "distance -0.1"), (0, float("nan"), "distance nan"),
])
def test_predictions_only_results_are_validated(pred, dist, message):
    result = AttackResult(epsilons=[0.1], predictions=torch.full((1, 4), pred),
                          distances=torch.full((1, 4), dist))
    with pytest.raises(ValueError, match=message):
        result_rows(_model(), result, X, Y, np.arange(4), None,
                    threat_model=ThreatModel.LINF, bounds=(0.0, 1.0), num_classes=2,
                    batch_size=4, device="cpu")


# ------------------------------------------------------------- ties and minimal sweeps


def _tied() -> nn.Module:
    """Logits (x0, x0, x1): classes 0 and 1 always tie."""
    net = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    return net


def test_tied_logits_resolve_to_the_first_class_everywhere():
    """Rows (0.9, 0.1): logits (0.9, 0.9, 0.1), a tie of classes 0 and 1 that the first
    wins; rows (0.1, 0.9): class 2. Label 1 makes the tied rows misclassified for the
    host's predictions, the rows and the attacks' success check alike."""
    from robench import attack_runtime
    from robench.evaluation import predict, predictions

    x = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]])
    y = torch.tensor([1, 2, 0])
    expected = [0, 2, 0]
    assert predictions(_tied(), x, 2, "cpu").tolist() == expected
    assert predict(_tied(), x, 2, "cpu")[0].tolist() == expected
    assert attack_runtime.predict(_tied(), x).tolist() == expected
    assert attack_runtime.succeeded(_tied(), x, y, None).tolist() == [True, False, False]
    result = AttackResult(epsilons=[0.0], adversarials=[x])
    rows, _ = result_rows(_tied(), result, x, y, np.arange(3), None,
                          threat_model=ThreatModel.LINF, bounds=(0.0, 1.0), num_classes=3,
                          batch_size=2, device="cpu", examples=0)
    assert rows["pred_clean"].tolist() == expected == rows["pred_adv"].tolist()
    assert rows["correct_clean"].tolist() == [False, True, True]


def _both_paths(model, result, x, y, threat_model, bounds=(0.0, 1.0)):
    """The rows and examples of ``result`` (a thresholded sweep, judged once) and of the
    same adversarials handed over as a plain list (re-checked eps by eps)."""
    from robench.attack_runtime import ThresholdedSweep

    assert isinstance(result.adversarials, ThresholdedSweep)
    listed = AttackResult(epsilons=result.epsilons,
                          adversarials=[result.adversarials[i].clone()
                                        for i in range(len(result.epsilons))])
    kwargs = dict(threat_model=threat_model, bounds=bounds, num_classes=10, batch_size=16,
                  device="cpu", examples=5)
    once = result_rows(model, result, x, y, np.arange(len(x)), None, **kwargs)
    per_eps = result_rows(model, listed, x, y, np.arange(len(x)), None, **kwargs)
    return once, per_eps


def test_a_real_minimal_attack_judged_once_gives_the_per_eps_rows(registry):
    """foolbox's L2 DeepFool on a random 10-class MLP: every candidate is predicted once
    and each eps selects; the rows and examples equal the per-eps re-check, at budgets
    that choose none, some and all of the candidates."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    x = torch.rand(40, 8)
    y = model(x).argmax(1).detach()
    attack = registry.get("attack", "foolbox.L2DeepFoolAttack")
    attack = attack(attack.Options(steps=5))
    epsilons = [0.0, 0.05, 0.1, 0.2, 0.4, 10.0]
    result = attack.run(model, x, y, epsilons, bounds=(0.0, 1.0),
                        generator=torch.Generator().manual_seed(1))
    dist = result.details["minimal_distances"]
    chosen = [int((dist <= eps).sum()) for eps in epsilons]
    assert chosen[0] == 0 and any(0 < c < len(x) for c in chosen) and chosen[-1] > chosen[1]
    (rows, arrays), (expected, expected_arrays) = _both_paths(model, result, x, y,
                                                              ThreatModel.L2)
    pd.testing.assert_frame_equal(rows, expected)
    assert arrays.keys() == expected_arrays.keys()
    for name in arrays:
        np.testing.assert_array_equal(arrays[name], expected_arrays[name])
    assert rows.groupby("epsilon")["success"].sum().tolist() == [
        c if e else 0 for c, e in zip(chosen, epsilons)]


def test_a_thresholded_sweep_is_judged_by_the_hosts_measurements():
    """A sweep whose distances understate: input 0's candidate is chosen at eps 0.1
    though it lies 0.3 away (over budget: the clean prediction stands), input 1's
    candidate is not finite (rejected at every eps it is chosen), input 2's lies 0.1
    away, input 3's is chosen only at eps 1 and lies outside the bounds (clipped: 0.2
    away). Both paths give the same rows."""
    from robench.attack_runtime import ThresholdedSweep

    x = X.clone()
    candidates = torch.tensor([[0.75, 0.5], [float("nan"), 0.5], [0.45, 0.5], [-0.5, 0.5]])
    claimed = torch.tensor([0.05, 0.05, 0.1, 0.7])
    epsilons = [0.0, 0.1, 1.0]
    result = AttackResult(epsilons=epsilons,
                          adversarials=ThresholdedSweep(x, candidates, claimed, epsilons))
    listed = AttackResult(epsilons=epsilons, adversarials=[result.adversarials[i]
                                                           for i in range(3)])
    kwargs = dict(threat_model=ThreatModel.LINF, bounds=(0.0, 1.0), num_classes=2,
                  batch_size=3, device="cpu", examples=4)
    rows, arrays = result_rows(_model(), result, x, Y, np.arange(4), None, **kwargs)
    expected, expected_arrays = result_rows(_model(), listed, x, Y, np.arange(4), None,
                                            **kwargs)
    pd.testing.assert_frame_equal(rows, expected)
    np.testing.assert_array_equal(arrays["adversarial"], expected_arrays["adversarial"])
    at = rows[rows["epsilon"] == 0.1]
    assert at["within_budget"].tolist() == [False, False, True, True]
    assert at["pred_adv"].tolist() == [0, 0, 0, 0]
    np.testing.assert_allclose(at["distance"], [0.3, np.nan, 0.1, 0.0], rtol=1e-6)
    at = rows[rows["epsilon"] == 1.0]
    assert at["within_budget"].tolist() == [True, False, True, True]
    assert at["pred_adv"].tolist() == [1, 0, 0, 0]
    np.testing.assert_allclose(at["distance"], [0.3, np.nan, 0.1, 0.2], rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rows_judged_on_a_gpu_equal_the_cpus():
    """The same adversarials (a list, re-checked eps by eps, and a thresholded sweep,
    judged once) give the same rows on the GPU as on the CPU; the adversarials may
    live on the GPU."""
    from robench.attack_runtime import ThresholdedSweep

    candidates = torch.tensor([[0.75, 0.5], [float("nan"), 0.5], [0.45, 0.5], [-0.5, 0.5]])
    claimed = torch.tensor([0.05, 0.05, 0.1, 0.7])
    epsilons = [0.0, 0.1, 1.0]
    for_cpu = AttackResult(epsilons=epsilons,
                           adversarials=ThresholdedSweep(X, candidates, claimed, epsilons))
    on_gpu = ThresholdedSweep(X.cuda(), candidates.cuda(), claimed.cuda(), epsilons)
    for_gpu = [AttackResult(epsilons=epsilons, adversarials=on_gpu),
               AttackResult(epsilons=epsilons, adversarials=[on_gpu[i] for i in range(3)])]
    kwargs = dict(threat_model=ThreatModel.LINF, bounds=(0.0, 1.0), num_classes=2,
                  batch_size=3, examples=4)
    expected, expected_arrays = result_rows(_model(), for_cpu, X, Y, np.arange(4), None,
                                            device="cpu", **kwargs)
    for result in for_gpu:
        rows, arrays = result_rows(_model().cuda(), result, X, Y, np.arange(4), None,
                                   device="cuda", **kwargs)
        pd.testing.assert_frame_equal(rows, expected, rtol=1e-6)
        np.testing.assert_array_equal(arrays["adversarial"], expected_arrays["adversarial"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_seeding_on_a_gpu_seeds_and_restores_its_generator():
    from robench.attack_runtime import seeded

    device = torch.device("cuda")
    torch.cuda.manual_seed(3)
    with seeded(7, device):
        inside = torch.rand(4, device=device)
    after = torch.rand(4, device=device)
    torch.cuda.manual_seed(7)
    assert torch.equal(inside, torch.rand(4, device=device))
    torch.cuda.manual_seed(3)
    assert torch.equal(after, torch.rand(4, device=device))


# --------------------------------------------------------------------------- training


class _Linear(Model):
    name = "test.linear"

    def build(self, info):
        return nn.Linear(2, 2)


class _NanPenalty(Defense):
    name = "test.nan_penalty"

    def loss_term(self, model, ctx):
        return torch.tensor(float("nan"))


class _OverflowAtEpochEnd(Defense):
    name = "test.overflow"

    def after_epoch(self, model, epoch, ctx):
        with torch.no_grad():
            model.weight[0, 0] = float("inf")


def _train(spec: TrainingSpec, defenses=()):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, generator=gen)
    y = (x[:, 0] > 0.5).long()
    info = DataInfo(name="t", input_shape=(2,), num_classes=2)
    data = LoadedData(info, x, y, x, y)
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    ctx = TrainingContext(info=info, device="cpu", epochs=spec.epochs, generator=gen,
                          attack=None)
    return train(model, _Linear(), data, spec, list(defenses), ctx, progress=False)


def test_a_nan_loss_stops_training_with_a_clear_message():
    with pytest.raises(NonFiniteTraining, match="loss became non-finite in epoch 1"):
        _train(TrainingSpec(epochs=2), [_NanPenalty()])


def test_weights_that_overflow_stop_training_with_a_clear_message():
    with pytest.raises(NonFiniteTraining, match="weight 'weight' became non-finite in "
                                                "epoch 1"):
        _train(TrainingSpec(epochs=2), [_OverflowAtEpochEnd()])


def test_finite_training_is_untouched():
    history = _train(TrainingSpec(epochs=2))
    assert history["loss"].notna().all() and len(history) == 6


def test_history_measures_a_fixed_subset_between_epochs_and_the_full_splits_at_the_end():
    """A model that always predicts class 0 (and learns nothing: lr = 1e-30) has, on any set of
    examples, accuracy = the fraction labelled 0 and mean loss = log(1 + e^-1) + the
    fraction labelled 1; the history must measure 1,000 training examples, the same ones
    every epoch, and the full 1,500 after the last epoch; the 600 test examples (fewer
    than 1,000) always in full."""
    from robench.schema import HISTORY_SUBSET

    assert HISTORY_SUBSET == 1000
    n_train, n_test, ones_train, ones_test, epochs = 1500, 600, 700, 150, 3
    gen = torch.Generator().manual_seed(0)
    x_train, x_test = torch.rand(n_train, 2, generator=gen), torch.rand(n_test, 2, generator=gen)
    y_train = (torch.arange(n_train) < ones_train).long()
    y_test = (torch.arange(n_test) < ones_test).long()
    info = DataInfo(name="t", input_shape=(2,), num_classes=2)
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0]))
    ctx = TrainingContext(info=info, device="cpu", epochs=epochs, generator=gen, attack=None)
    history = train(model, _Linear(), LoadedData(info, x_train, y_train, x_test, y_test),
                    TrainingSpec(epochs=epochs, lr=1e-30), [], ctx, progress=False)
    np.testing.assert_allclose(history["loss"], np.log1p(np.exp(-1.0))
                               + 1 - history["accuracy"], rtol=1e-6)
    train_rows = history[history["split"] == "train"].set_index("epoch")["accuracy"]
    test_rows = history[history["split"] == "test"].set_index("epoch")["accuracy"]
    assert train_rows[epochs] == pytest.approx(1 - ones_train / n_train)
    between = train_rows[train_rows.index < epochs]
    assert between.nunique() == 1  # the same examples every epoch
    assert between.iloc[0] != pytest.approx(train_rows[epochs])
    assert round(between.iloc[0] * HISTORY_SUBSET, 6).is_integer()  # 1,000 examples
    np.testing.assert_allclose(test_rows, 1 - ones_test / n_test)
