"""Defense losses and weight transformations against closed forms: weight decay's
penalty, the training loop's sum of every defense's loss term, and the spectral and
binarising weight transformations (checked against dense matrices built independently)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench.components import DataInfo, Defense, LoadedData, Model, TrainingContext
from robench.config import TrainingSpec
from robench.training import train
from robench_plugins.defenses._weights import (
    Scale,
    SignSTE,
    clip_conv,
    clip_matrix,
    conv_operator_norm,
)
from robench_plugins.defenses.weight_decay import WeightDecay, WeightDecayOptions


def two_layers() -> nn.Module:
    """Weights (1, -2; 3, 0) and (0.5, -0.5), biases (1, 1) and (-3): sums by hand."""
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.0]]))
        net[0].bias.copy_(torch.tensor([1.0, 1.0]))
        net[1].weight.copy_(torch.tensor([[0.5, -0.5]]))
        net[1].bias.copy_(torch.tensor([-3.0]))
    return net


# weights: squares 1 + 4 + 9 + 0 + 0.25 + 0.25 = 14.5, absolute values 1+2+3+0+.5+.5 = 7,
# 6 values; biases: squares 1 + 1 + 9 = 11, absolute values 5, 3 values
@pytest.mark.parametrize("options, expected", [
    (dict(norm="l2", coefficient=0.1), 0.1 * 0.5 * 14.5),
    (dict(norm="l2", coefficient=0.1, reduction="mean"), 0.1 * 0.5 * 14.5 / 6),
    (dict(norm="l2", coefficient=0.1, parameters="all"), 0.1 * 0.5 * (14.5 + 11)),
    (dict(norm="l2", coefficient=0.1, parameters="all", reduction="mean"),
     0.1 * 0.5 * 25.5 / 9),
    (dict(norm="l1", coefficient=0.1), 0.1 * 7),
    (dict(norm="l1", coefficient=0.1, reduction="mean"), 0.1 * 7 / 6),
    (dict(norm="l1", coefficient=0.1, parameters="all"), 0.1 * 12),
])
def test_weight_decay_penalty_by_hand(options, expected):
    """Bug: the L2 penalty losing its 0.5 (``lambda * sum(w^2) / 2``, TensorFlow's
    ``l2_loss``), and every other reduction of the penalty, by hand."""
    term = WeightDecay(WeightDecayOptions(**options)).loss_term(two_layers(), None)
    assert term.item() == pytest.approx(expected, rel=1e-6)


def test_weight_decay_defaults_are_l2_summed_over_weights():
    term = WeightDecay().loss_term(two_layers(), None)
    assert term.item() == pytest.approx(1e-3 * 0.5 * 14.5, rel=1e-6)


def test_weight_decay_gradient_is_coefficient_times_weight():
    """d/dw of lambda * 0.5 * w^2 is lambda * w: the classic weight decay step."""
    net = two_layers()
    WeightDecay(WeightDecayOptions(coefficient=0.2)).loss_term(net, None).backward()
    torch.testing.assert_close(net[0].weight.grad, 0.2 * net[0].weight.detach())
    assert net[0].bias.grad is None


def test_weight_decay_skips_frozen_parameters_and_models_without_weights():
    net = two_layers()
    net[0].weight.requires_grad_(False)
    term = WeightDecay(WeightDecayOptions(coefficient=1.0)).loss_term(net, None)
    assert term.item() == pytest.approx(0.5 * 0.5)
    assert WeightDecay().loss_term(nn.Sequential(), None) is None
    bias_only = nn.Linear(2, 2)
    bias_only.weight.requires_grad_(False)
    assert WeightDecay().loss_term(bias_only, None) is None


def test_weight_decay_refuses_a_negative_coefficient():
    with pytest.raises(ValueError, match="coefficient must be >= 0, got -1"):
        WeightDecayOptions(coefficient=-1)
    assert WeightDecayOptions(coefficient=0).coefficient == 0


# --------------------------------------------------------------- the training loop

class Bare(Model):
    """A bias-free 2 -> 2 linear model."""

    name = "numbers.bare"

    def build(self, info):
        return nn.Linear(2, 2, bias=False)


class SumPenalty(Defense):
    """``scale * sum(w)``: a gradient of exactly ``scale`` on every weight."""

    name = "numbers.sum_penalty"

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def loss_term(self, model, ctx):
        return self.scale * sum(p.sum() for p in model.parameters())


def one_sgd_step(defenses) -> torch.Tensor:
    """The weights after one full-batch SGD step (lr 0.5, no momentum) from a fixed start."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 2, generator=gen)
    y = (x[:, 0] > 0.5).long()
    info = DataInfo(name="numbers", input_shape=(2,), num_classes=2)
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.25, -0.5], [0.75, 1.0]]))
    ctx = TrainingContext(info=info, device="cpu", epochs=1, generator=gen, attack=None)
    spec = TrainingSpec(optimizer="sgd", lr=0.5, momentum=0.0, epochs=1, batch_size=8)
    train(model, Bare(), LoadedData(info, x, y, x, y), spec, list(defenses), ctx,
          progress=False)
    return model.weight.detach()


def test_every_defenses_loss_term_is_added():
    """Bug: only the first defense's loss term added. Penalties with gradients 0.1 and
    0.3 on every weight move each weight by -lr * (0.1 + 0.3) = -0.2 beyond the
    cross-entropy step."""
    plain = one_sgd_step([])
    both = one_sgd_step([SumPenalty(0.1), SumPenalty(0.3)])
    torch.testing.assert_close(both - plain, torch.full((2, 2), -0.2))
    second = one_sgd_step([Defense(), SumPenalty(0.3)])
    torch.testing.assert_close(second - plain, torch.full((2, 2), -0.15))


def test_weight_decay_in_training_is_a_decay_of_lr_times_lambda():
    """One SGD step with lambda * 0.5 * ||w||^2 adds -lr * lambda * w to the update."""
    plain = one_sgd_step([])
    start = torch.tensor([[0.25, -0.5], [0.75, 1.0]])
    decayed = one_sgd_step([WeightDecay(WeightDecayOptions(coefficient=0.2))])
    torch.testing.assert_close(decayed - plain, -0.5 * 0.2 * start)


# --------------------------------------------------------------- weight transformations

def circular_operator(kernel: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The dense matrix of the circular cross-correlation with ``kernel`` on ``size``,
    built column by column from torch's own convolution (an independent route)."""
    out_ch, in_ch, kh, kw = kernel.shape
    n = in_ch * size[0] * size[1]
    columns = []
    for i in range(n):
        basis = torch.zeros(n, dtype=torch.float64)
        basis[i] = 1.0
        x = basis.view(1, in_ch, *size)
        padded = F.pad(x, (0, kw - 1, 0, kh - 1), mode="circular")
        columns.append(F.conv2d(padded, kernel.double()).flatten().numpy())
    return np.stack(columns, axis=1)


def test_scale_multiplies_by_its_factor():
    assert Scale(0.25)(torch.tensor([2.0, -4.0])).tolist() == [0.5, -1.0]


def test_clip_matrix_caps_singular_values_by_hand():
    """W = U diag(3, 0.5) V^T with rotations U, V: clipped at 1 it is U diag(1, 0.5) V^T."""
    c, s = math.cos(0.3), math.sin(0.3)
    u = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    v = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    w = u @ torch.diag(torch.tensor([3.0, 0.5], dtype=torch.float64)) @ v.T
    out = clip_matrix(w.float(), 1.0)
    expected = u @ torch.diag(torch.tensor([1.0, 0.5], dtype=torch.float64)) @ v.T
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=0)


def test_clip_matrix_of_a_wide_and_a_tall_matrix():
    """[[3, 0, 0], [0, 0.5, 0]] clipped at 1 is [[1, 0, 0], [0, 0.5, 0]]; its transpose
    likewise."""
    w = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    torch.testing.assert_close(clip_matrix(w, 1.0), expected)
    torch.testing.assert_close(clip_matrix(w.T, 1.0), expected.T)


def test_conv_operator_norm_matches_the_dense_operator():
    gen = torch.Generator().manual_seed(1)
    kernel = torch.randn(3, 2, 3, 3, generator=gen)
    dense = np.linalg.svd(circular_operator(kernel, (5, 4)), compute_uv=False).max()
    assert conv_operator_norm(kernel.double(), (5, 4)) == pytest.approx(dense, rel=1e-9)
    # a 3x3 kernel of ones: its largest response is the constant input, 9
    assert conv_operator_norm(torch.ones(1, 1, 3, 3), (4, 4)) == pytest.approx(9.0)


def test_conv_operator_norm_of_a_kernel_larger_than_the_input():
    """A 3x3 kernel on a 2x2 input: the grid grows to 3x3, the kernel's own support."""
    kernel = torch.ones(1, 1, 3, 3)
    assert conv_operator_norm(kernel, (2, 2)) == pytest.approx(9.0)


def test_clip_conv_of_a_scaled_identity_is_the_identity():
    """2 * (centre tap) is 2 * identity: clipped at 1 it is the identity kernel."""
    kernel = torch.zeros(1, 1, 3, 3)
    kernel[0, 0, 1, 1] = 2.0
    out = clip_conv(kernel, (4, 4), 1.0)
    expected = torch.zeros(1, 1, 3, 3)
    expected[0, 0, 1, 1] = 1.0
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert out.dtype == kernel.dtype and out.shape == kernel.shape


@pytest.mark.parametrize("exact", [True, False])
def test_clip_conv_bounds_the_dense_operator(exact):
    gen = torch.Generator().manual_seed(2)
    kernel = torch.randn(2, 2, 3, 3, generator=gen, dtype=torch.float64)
    before = np.linalg.svd(circular_operator(kernel, (6, 6)), compute_uv=False)
    out = clip_conv(kernel, (6, 6), 1.0, exact=exact)
    after = np.linalg.svd(circular_operator(out, (6, 6)), compute_uv=False)
    assert before.max() > 2.0
    if exact:
        assert after.max() == pytest.approx(1.0, abs=1e-9)
        torch.testing.assert_close(clip_conv(kernel, (6, 6), 1.0), out)  # the default
    else:  # the crop alone: close to the bound, not rescaled onto it
        assert 1.0 < after.max() < before.max()


def test_clip_conv_leaves_a_small_kernel_alone():
    gen = torch.Generator().manual_seed(3)
    kernel = 0.01 * torch.randn(2, 3, 3, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(clip_conv(kernel, (5, 5), 1.0), kernel, atol=1e-12, rtol=0)


def test_sign_ste_binarises_forward_and_passes_gradients_through():
    w = torch.tensor([0.5, -1.5, 2.0, -1.0], requires_grad=True)
    mean = SignSTE("mean")(w)
    assert mean.tolist() == pytest.approx([1.25, -1.25, 1.25, -1.25])
    plain = SignSTE("none")(w)
    assert plain.tolist() == [1.0, -1.0, 1.0, -1.0]
    (mean * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert w.grad.tolist() == [1.0, 2.0, 3.0, 4.0]
