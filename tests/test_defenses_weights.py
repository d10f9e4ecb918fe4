"""label_smoothing (loss), binarized (straight-through binary weights) and weight_decay."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench import ConfigError, DataInfo, TrainingContext
from robench.options import parse_options
from robench_plugins.defenses.binarized import Binarized
from robench_plugins.defenses.label_smoothing import LabelSmoothing
from robench_plugins.defenses.weight_decay import WeightDecay
from robench_plugins.models.linear import LogisticRegression

PAIR = DataInfo("pair", (1, 4, 4), 2)
CTX = TrainingContext(info=PAIR, device="cpu", epochs=1, generator=None, attack=None)


def test_label_smoothing_loss_by_hand():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 1, 0])
    alpha = 0.2
    loss = LabelSmoothing(LabelSmoothing.Options(smoothing=alpha)).sample_loss(
        None, logits, y, CTX).mean()
    logp = logits.log_softmax(1)
    target = torch.full((6, 4), alpha / 4)
    target[torch.arange(6), y] += 1 - alpha
    assert loss.item() == pytest.approx(-(target * logp).sum(1).mean().item(), rel=1e-6)
    assert LabelSmoothing(LabelSmoothing.Options(smoothing=0.0)).sample_loss(
        None, logits, y, CTX).mean().item() == pytest.approx(F.cross_entropy(logits, y).item())
    with pytest.raises(ConfigError, match="smoothing"):
        parse_options(LabelSmoothing.Options, {"smoothing": 1.0})


def test_binarized_forward_is_sign_times_mean_abs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Linear(5, 2))
    latent = [net[1].weight.detach().clone(), net[3].weight.detach().clone()]
    net = Binarized().wrap_model(net, CTX)
    for layer, w in zip((net[1], net[3]), latent):
        assert torch.equal(layer.parametrizations.weight.original.detach(), w)
        assert torch.allclose(layer.weight, torch.sign(w) * w.abs().mean())
        assert layer.weight.abs().unique().numel() == 1
    assert not nn.utils.parametrize.is_parametrized(net[1], "bias")
    plain = Binarized(Binarized.Options(scale="none")).wrap_model(
        nn.Sequential(nn.Linear(3, 2)), CTX)
    assert set(plain[0].weight.detach().abs().unique().tolist()) == {1.0}


def test_binarized_gradient_is_straight_through():
    """d loss / d latent = d loss / d binary weight (identity STE, Galloway et al.'s code)."""
    torch.manual_seed(0)
    lin = Binarized().wrap_model(nn.Sequential(nn.Linear(4, 1, bias=False)), CTX)[0]
    x = torch.randn(8, 4)
    lin(x).sum().backward()
    # loss = sum_i w_b . x_i, so d/dw_b = sum_i x_i
    assert torch.allclose(lin.parametrizations.weight.original.grad, x.sum(0, keepdim=True))


def test_binarized_logistic_regression_trains_and_reloads():
    """A binarised logistic model learns a separable pair (expert init writes the latent
    weight), and its state_dict reloads into a freshly wrapped model."""
    g = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(200, 1, 4, 4, generator=g)
    y = (torch.arange(200) % 2).long()
    x[y == 1, 0, :2] += 0.8 * torch.rand(100, 2, 4, generator=g)  # "3": top half
    x[y == 0, 0, 2:] += 0.8 * torch.rand(100, 2, 4, generator=g)  # "7": bottom half
    model = LogisticRegression(LogisticRegression.Options(init="normal"))
    torch.manual_seed(3)
    net = Binarized().wrap_model(model.build(PAIR), CTX)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    assert (net(x).argmax(1) == y).float().mean() > 0.95
    signs = net.linear.weight.detach().sign().view(4, 4)
    assert (signs[:2] == 1).all() and (signs[2:] == -1).all()
    assert net.linear.weight.detach().abs().unique().numel() == 1
    fresh = Binarized().wrap_model(model.build(PAIR), CTX)
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh(x), net(x))
    expert = LogisticRegression(LogisticRegression.Options(init="expert"))
    enet = Binarized().wrap_model(expert.build(PAIR), CTX)
    expert.init_from_data(enet, x, y)
    diff = x[y == 1].flatten(1).mean(0) - x[y == 0].flatten(1).mean(0)
    assert torch.allclose(enet.linear.weight[0], torch.sign(diff) * diff.abs().mean())


@pytest.mark.parametrize("norm, reduction, by_hand", [
    # w = (3, -4) and the 2x2 kernel (1, -1, 2, 0): 6 values
    ("l2", "sum", 0.5 * (9 + 16 + 1 + 1 + 4 + 0)),      # tf.nn.l2_loss: sum(w^2) / 2
    ("l2", "mean", 0.5 * (9 + 16 + 1 + 1 + 4 + 0) / 6),
    ("l1", "sum", 3 + 4 + 1 + 1 + 2 + 0),
    ("l1", "mean", (3 + 4 + 1 + 1 + 2 + 0) / 6),         # Galloway et al.'s lambda * mean|w|
])
def test_weight_decay_penalty_by_hand(norm, reduction, by_hand):
    """The penalty of known weights: 0.5 in the L2 form, mean = sum / number of values,
    biases left out unless ``parameters = "all"``."""
    net = nn.Sequential(nn.Linear(2, 1), nn.Conv2d(1, 1, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, -4.0]]))
        net[0].bias.fill_(100.0)
        net[1].weight.copy_(torch.tensor([1.0, -1.0, 2.0, 0.0]).view(1, 1, 2, 2))
        net[1].bias.fill_(-100.0)
    options = parse_options(WeightDecay.Options, {"norm": norm, "reduction": reduction,
                                                 "coefficient": 0.3})
    assert WeightDecay(options).loss_term(net, CTX).item() == pytest.approx(0.3 * by_hand)


def test_weight_decay_mean_of_all_parameters_and_errors():
    lin = nn.Linear(4, 1)
    with torch.no_grad():
        lin.weight.fill_(-2.0)
        lin.bias.fill_(6.0)
    options = parse_options(WeightDecay.Options, {"norm": "l1", "reduction": "mean",
                                                 "parameters": "all", "coefficient": 1.0})
    assert WeightDecay(options).loss_term(lin, CTX).item() == pytest.approx((4 * 2 + 6) / 5)
    assert WeightDecay().loss_term(nn.Sequential(nn.ReLU()), CTX) is None
    with pytest.raises(ConfigError, match="reduction"):
        parse_options(WeightDecay.Options, {"reduction": "max"})
    with pytest.raises(ConfigError, match="coefficient"):
        parse_options(WeightDecay.Options, {"coefficient": -1.0})
