"""Per-cell metrics (model, weights, data) against independent computations."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench import CellData, DataInfo, LoadedData
from robench_plugins.metrics.generalisation import (
    AttackedOptions,
    GEGap,
    LossVariation,
    Margins,
)
from robench_plugins.metrics.linear import BoundaryTilting, RobustFeatures
from robench_plugins.metrics.spectrum import SingularValues
from robench_plugins.operators import conv_singular_values, layer_singular_values

torch.set_num_threads(1)


def unrolled(op, in_shape):
    """The matrix of the linear part of ``op`` on inputs of ``in_shape``, column by
    column (the bias, op(0), subtracted)."""
    n = math.prod(in_shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
    with torch.no_grad():
        return (op(basis) - op(torch.zeros_like(basis[:1]))).reshape(n, -1).T


def circular(conv, pad):
    """``conv`` applied after circular padding ``pad`` (F.pad order)."""
    return lambda x: conv(F.pad(x, pad, mode="circular"))


CONV_CASES = [
    # (layer, spatial input size, how the circular operator is applied)
    (nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", bias=False), (5, 5), None),
    (nn.Conv2d(3, 2, 2, bias=False), (4, 6), (0, 1, 0, 1)),                # even, non-square
    (nn.Conv2d(1, 2, 5, padding=2, padding_mode="circular", bias=False), (3, 3), None),  # k > n
    (nn.Conv2d(4, 4, 3, groups=2, padding=1, padding_mode="circular", bias=False), (4, 4), None),
    (nn.Conv2d(2, 2, 3, dilation=2, padding=2, padding_mode="circular", bias=False), (6, 6), None),
    (nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular", bias=False), (7,), None),
]


@pytest.mark.parametrize("layer,size,pad", CONV_CASES)
def test_fft_singular_values_equal_svd_of_unrolled_circular_convolution(layer, size, pad):
    torch.manual_seed(0)
    layer = layer.double()
    op = layer if pad is None else circular(layer, pad)
    expected = torch.linalg.svdvals(unrolled(op, (layer.in_channels, *size)))
    got = conv_singular_values(layer.weight, size, groups=layer.groups, dilation=layer.dilation)
    assert got.shape == expected.shape
    torch.testing.assert_close(got.sort(descending=True).values, expected, rtol=1e-9, atol=1e-9)


STRIDED_CASES = [
    # (layer, spatial input size, circular padding applied before the layer)
    (nn.Conv2d(2, 3, 3, stride=2, padding=1, padding_mode="circular", bias=False), (6, 6)),
    (nn.Conv2d(2, 2, 4, stride=(2, 3), bias=False), (4, 6)),
    (nn.Conv2d(3, 2, 3, stride=2, dilation=2, padding=2, padding_mode="circular",
               bias=False), (8, 8)),
    (nn.Conv1d(2, 3, 5, stride=2, padding=2, padding_mode="circular", bias=False), (8,)),
]


def wrapped(layer):
    """``layer`` made circular without padding of its own: pad circularly by the
    kernel's extent minus one at the end, so the outputs are every stride-th shift."""
    extent = [(k - 1) * d for k, d in zip(layer.kernel_size, layer.dilation)]
    pad = [p for e in reversed(extent) for p in (0, e)]
    plain = type(layer)(layer.in_channels, layer.out_channels, layer.kernel_size,
                        stride=layer.stride, dilation=layer.dilation, bias=False).double()
    plain.weight.data.copy_(layer.weight.data)
    return lambda x: plain(F.pad(x, pad, mode="circular"))


@pytest.mark.parametrize("layer,size", STRIDED_CASES)
def test_polyphase_singular_values_equal_svd_of_unrolled_strided_circular_convolution(
        layer, size):
    torch.manual_seed(0)
    layer = layer.double()
    expected = torch.linalg.svdvals(unrolled(wrapped(layer), (layer.in_channels, *size)))
    got = conv_singular_values(layer.weight, size, stride=layer.stride,
                               dilation=layer.dilation)
    assert got.shape == expected.shape
    torch.testing.assert_close(got.sort(descending=True).values, expected, rtol=1e-9,
                               atol=1e-9)


def test_layer_method_dense_when_small_fft_otherwise_with_a_note():
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    dense, method, note = layer_singular_values(layer, (2, 6, 6))
    assert method == "dense" and note == ""
    np.testing.assert_allclose(dense, torch.linalg.svdvals(unrolled(layer, (2, 6, 6))).numpy(),
                               rtol=1e-9)
    values, method, note = layer_singular_values(layer, (2, 6, 6), dense_limit=0)
    assert method == "polyphase fft" and "zeros padding" in note
    assert len(values) == len(dense)
    _, method, note = layer_singular_values(layer, (2, 5, 5), dense_limit=0)
    assert method == "fft" and "does not divide" in note


def test_defense_and_metric_measure_one_operator():
    from robench_plugins.defenses._weights import clip_conv, conv_operator_norm

    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", bias=False).double()
    with torch.no_grad():
        layer.weight.mul_(4)
        layer.weight.copy_(clip_conv(layer.weight, (6, 6), 1.5))
    values, method, _ = layer_singular_values(layer, (2, 6, 6))
    assert method == "dense"
    assert values[0] == pytest.approx(conv_operator_norm(layer.weight, (6, 6)), rel=1e-9)
    assert values[0] <= 1.5 + 1e-9


def registry_attack(name, options):
    """The host's attack factory, as the runner hands it to CellData."""
    from robench.config import component_spec
    from robench.plugins import get_registry

    registry = get_registry()
    return component_spec("attack", name, options, registry=registry,
                          where="metrics").create(registry)


def make_cell(model, x_train, y_train, x_test, y_test, *, num_classes, history=None,
              bounds=(0.0, 1.0), attack=registry_attack):
    info = DataInfo("toy", tuple(x_train.shape[1:]), num_classes, bounds=bounds)
    data = LoadedData(info, x_train, y_train, x_test, y_test)
    return CellData({"dataset": "toy", "model": "m", "defense": "none", "seed": 0,
                     "cell": "m--none--s0"}, model,
                    data, history if history is not None else pd.DataFrame(), "cpu",
                    attack=attack)


def rows_of(frame, metric, **where):
    part = frame[frame["metric"] == metric]
    for col, value in where.items():
        part = part[part[col] == value]
    return part


def test_singular_values_of_a_small_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                          nn.Conv2d(3, 2, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(2 * 3 * 3, 4))
    x = torch.rand(5, 1, 6, 6)
    y = torch.zeros(5, dtype=torch.long)
    cell = make_cell(model, x, y, x, y, num_classes=4)
    out = SingularValues(SingularValues.Options(max_values=10)).from_cell(cell)
    conv0 = model[0].double()
    expected0 = torch.linalg.svdvals(unrolled(conv0, (1, 6, 6))).numpy()
    model.float()
    assert rows_of(out, "sv_max", layer="0")["value"].iat[0] == pytest.approx(expected0[0])
    assert rows_of(out, "sv_std", layer="0")["value"].iat[0] == pytest.approx(expected0.std())
    assert rows_of(out, "sv_count", layer="0")["value"].iat[0] == 36
    # the strided, zero-padded layer is small: its exact operator on 3x6x6 inputs
    conv2 = model[2].double()
    expected2 = torch.linalg.svdvals(unrolled(conv2, (3, 6, 6))).numpy()
    model.float()
    assert rows_of(out, "sv_count", layer="2")["value"].iat[0] == len(expected2) == 18
    assert rows_of(out, "sv_max", layer="2")["value"].iat[0] == pytest.approx(expected2[0])
    assert set(rows_of(out, "sv_max")["method"]) == {"dense", "matrix"}
    lin = torch.linalg.svdvals(model[5].weight.detach().double()).numpy()
    assert rows_of(out, "sv_max", layer="5")["value"].iat[0] == pytest.approx(lin[0])
    assert len(rows_of(out, "singular_value", layer="0")) == 10        # subsampled
    assert len(rows_of(out, "singular_value", layer="5")) == 4
    maxima = rows_of(out, "sv_max").sort_values("layer_index")
    assert list(maxima["layer"]) == ["0", "2", "5"]
    maxima = maxima["value"].to_numpy()
    assert rows_of(out, "spectral_complexity")["value"].iat[0] == pytest.approx(np.prod(maxima))


def binary_blobs(n=40, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centres = torch.randn(2, d, generator=gen, dtype=torch.float64)
    x = centres[y] + 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x.float(), y


def linear_model(w, b=0.0, outputs=2):
    model = nn.Linear(len(w), outputs)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[-1] = torch.as_tensor(w, dtype=torch.float32)
        model.bias[-1] = b
    return nn.Sequential(nn.Flatten(), model)


def test_tilting_angle_of_nearest_centroid_and_orthogonal_classifiers():
    x, y = binary_blobs()
    xd = x.double()
    z = (xd[y == 1].mean(0) - xd[y == 0].mean(0))
    # nearest-centroid classifier: w = z (two logits: class 1 - class 0 = z)
    out = BoundaryTilting().from_cell(make_cell(linear_model(z, b=-1.0), x, y, x, y,
                                                num_classes=2))
    assert rows_of(out, "tilting_angle")["value"].iat[0] == pytest.approx(0.0, abs=2e-3)
    assert rows_of(out, "d_adv")["value"].iat[0] == pytest.approx(0.5 * float(z.norm()), rel=1e-5)
    # balanced classes: the mean signed distance equals the closed form
    assert rows_of(out, "d_adv_empirical")["value"].iat[0] == pytest.approx(
        rows_of(out, "d_adv")["value"].iat[0], rel=1e-4)
    # orthogonal classifier, one logit
    v = torch.randn(len(z), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = v - (v @ z) / (z @ z) * z
    out = BoundaryTilting().from_cell(make_cell(linear_model(v, outputs=1), x, y, x, y,
                                                num_classes=2))
    assert rows_of(out, "tilting_angle")["value"].iat[0] == pytest.approx(math.pi / 2, abs=1e-5)
    assert rows_of(out, "d_adv")["value"].iat[0] == pytest.approx(0.0, abs=1e-5)
    # weight RMS by hand (the one-logit Linear weight is v)
    assert rows_of(out, "weight_rms")["value"].iat[0] == pytest.approx(
        float(v.float().double().pow(2).mean().sqrt()), rel=1e-6)


def test_tilting_of_the_expert_initialised_logistic_model_is_zero():
    """The logistic-regression plugin's "expert" init (Galloway et al. 2018: w = mean of class 1
    minus mean of class 0) is the nearest-centroid classifier; the metric reads it
    through the model's two-logit wrapper and in-model normalisation."""
    from robench_plugins.models.linear import LogisticRegression

    x, y = binary_blobs(d=6)
    x = x.reshape(-1, 1, 2, 3)
    data_info = DataInfo("toy", (1, 2, 3), 2, bounds=(-10.0, 10.0))
    factory = LogisticRegression(LogisticRegression.Options(init="expert", mean=(0.5,),
                                                            std=(2.0,)))
    model = factory.build(data_info)
    factory.init_from_data(model, x, y)
    out = BoundaryTilting().from_cell(make_cell(model, x, y, x, y, num_classes=2,
                                                bounds=(-10.0, 10.0)))
    assert rows_of(out, "tilting_angle")["value"].iat[0] == pytest.approx(0.0, abs=2e-3)
    xd = x.flatten(1).double()
    z = xd[y == 1].mean(0) - xd[y == 0].mean(0)
    assert rows_of(out, "d_adv")["value"].iat[0] == pytest.approx(0.5 * float(z.norm()), rel=1e-5)


def test_tilting_skips_nonlinear_models():
    x, y = binary_blobs()
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    out = BoundaryTilting().from_cell(make_cell(model, x, y, x, y, num_classes=2))
    assert list(out["metric"]) == ["weight_rms"]


# Identity "model": the inputs are the logits, so losses and margins are known in closed form.
X_TRAIN = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
Y_TRAIN = torch.tensor([0, 1, 0])
X_TEST = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
Y_TEST = torch.tensor([1, 1])


def identity_model():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    return model


def softplus(v):
    return math.log1p(math.exp(v))


def test_ge_gap_matches_hand_computation():
    cell = make_cell(identity_model(), X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, num_classes=2,
                     bounds=(-5.0, 5.0))
    pgd = {"steps": 10, "abs_stepsize": 0.2, "random_start": True}
    out = GEGap(AttackedOptions(eps=0.6, attack_options=pgd)).from_cell(cell)
    clean = out[out["condition"] == "clean"].set_index("metric")["value"]
    # margins (true - other logit): train 2, 2, 1 (all correct); test -2, 2
    train_loss = (2 * softplus(-2) + softplus(-1)) / 3
    test_loss = (softplus(2) + softplus(-2)) / 2
    assert clean["train_accuracy"] == 1.0 and clean["test_accuracy"] == 0.5
    assert clean["accuracy_gap"] == pytest.approx(0.5)
    assert clean["loss_gap"] == pytest.approx(test_loss - train_loss, rel=1e-5)
    # PGD eps 0.6 moves each margin by 2 * 0.6 (|w_y - w_other|_1 = 2): train 0.8, 0.8, -0.2
    adv = out[out["condition"] == "attacked"].set_index("metric")["value"]
    assert adv["train_accuracy"] == pytest.approx(2 / 3)
    assert adv["test_accuracy"] == pytest.approx(1 / 2)
    adv_train = (2 * softplus(-0.8) + softplus(0.2)) / 3
    adv_test = (softplus(3.2) + softplus(-0.8)) / 2
    assert adv["loss_gap"] == pytest.approx(adv_test - adv_train, rel=1e-4)

    history = pd.DataFrame({"epoch": [0, 0, 3, 3], "split": ["train", "test"] * 2,
                            "loss": [9.0, 9.0, 0.25, 0.5], "accuracy": [0.1, 0.1, 0.9, 0.7]})
    cell = make_cell(identity_model(), X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, num_classes=2,
                     history=history)
    out = GEGap(AttackedOptions(eps=0.0)).from_cell(cell).set_index("metric")
    assert out.loc["accuracy_gap", "value"] == pytest.approx(0.2)
    assert out.loc["loss_gap", "value"] == pytest.approx(0.25)
    assert "epoch 3" in out.loc["loss_gap", "note"]


def test_loss_variation_matches_hand_computation():
    cell = make_cell(identity_model(), X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, num_classes=2,
                     bounds=(-5.0, 5.0))
    pgd = {"steps": 10, "abs_stepsize": 0.2, "random_start": True}
    out = LossVariation(AttackedOptions(eps=0.6, attack_options=pgd)).from_cell(cell)
    diffs = [softplus(3.2) - softplus(2), softplus(-0.8) - softplus(-2)]
    mean = rows_of(out, "loss_variation_mean")["value"].iat[0]
    std = rows_of(out, "loss_variation_std")["value"].iat[0]
    assert mean == pytest.approx(np.mean(diffs), rel=1e-4)
    assert std == pytest.approx(np.std(diffs), rel=1e-3)


class ShiftAttack:
    """A stand-in attack: moves every input by ``-eps`` on each feature."""

    def __init__(self, name, options):
        self.name, self.options = name, options

    def perturb(self, model, x, y, eps, *, bounds, generator=None):
        return x - eps


def test_gap_and_loss_variation_use_the_attack_the_user_names():
    made = []

    def factory(name, options):
        made.append((name, options))
        return ShiftAttack(name, options)

    cell = make_cell(identity_model(), X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, num_classes=2,
                     bounds=(-5.0, 5.0), attack=factory)
    options = AttackedOptions(eps=0.5, attack="custom.Shift", attack_options={"k": 1})
    gap = GEGap(options).from_cell(cell)
    variation = LossVariation(options).from_cell(cell)
    assert made == [("custom.Shift", {"k": 1})] * 2
    # x - 0.5 on both features leaves the identity model's margin (x_y - x_other) as is
    adv = gap[gap["condition"] == "attacked"].set_index("metric")["value"]
    clean = gap[gap["condition"] == "clean"].set_index("metric")["value"]
    assert adv["test_loss"] == pytest.approx(clean["test_loss"], rel=1e-6)
    assert rows_of(variation, "loss_variation_mean")["value"].iat[0] == pytest.approx(0, abs=1e-6)


def test_margins_distribution_rows():
    cell = make_cell(identity_model(), X_TRAIN, Y_TRAIN, X_TEST, Y_TEST, num_classes=2)
    out = Margins(Margins.Options(bins=4, quantiles=3)).from_cell(cell)
    assert rows_of(out, "logit_margin_mean", split="train")["value"].iat[0] == pytest.approx(5 / 3)
    q = rows_of(out, "logit_margin_quantile", split="test").set_index("quantile")["value"]
    assert (q[0.0], q[0.5], q[1.0]) == pytest.approx((-2.0, 0.0, 2.0))
    hist = rows_of(out, "true_class_probability_hist", split="test")
    assert hist["value"].sum() == pytest.approx(1.0)
    # p(true) on test: sigmoid(-2) = 0.12 (bin [0, .25)) and sigmoid(2) = 0.88 (bin [.75, 1])
    assert hist["value"].tolist() == [0.5, 0.0, 0.0, 0.5]


def test_robust_features_correlation_and_weights():
    gen = torch.Generator().manual_seed(0)
    n, d, eta, p = 400, 6, 0.3, 0.7
    y = (torch.rand(n, generator=gen) < 0.5).long()
    s = 2 * y.float() - 1
    x1 = torch.where(torch.rand(n, generator=gen) < p, s, -s)
    rest = eta * s[:, None] + torch.randn(n, d, generator=gen)
    x = torch.cat([x1[:, None], rest], 1)
    w = torch.tensor([2.0, 0.1, -0.1, 0.2, 0.0, 0.1, 0.5])
    out = RobustFeatures(RobustFeatures.Options(top_k=1)).from_cell(
        make_cell(linear_model(w), x, y, x, y, num_classes=2))
    corr = rows_of(out, "feature_correlation").sort_values("feature")["value"].to_numpy()
    expected = [np.corrcoef(x[:, f].numpy(), s.numpy())[0, 1] for f in range(d + 1)]
    np.testing.assert_allclose(corr, expected, rtol=1e-5)
    assert np.argmax(np.abs(corr)) == 0          # the robust feature x1 (corr ~ 2p - 1)
    assert rows_of(out, "weight_l1")["value"].iat[0] == pytest.approx(3.0, rel=1e-6)
    assert rows_of(out, "top_k_weight_share")["value"].iat[0] == pytest.approx(2.0 / 3.0, rel=1e-6)
    weights = rows_of(out, "feature_weight").sort_values("feature")["value"].to_numpy()
    np.testing.assert_allclose(weights, w.numpy(), rtol=1e-6)
