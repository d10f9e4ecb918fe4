"""Model plugins: exact architectures (parameter counts, shapes), initialisations,
the two-logit linear models, checkpoints and in-model normalisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench import ConfigError, DataInfo
from robench.options import parse_options
from robench_plugins.models.cnn import GallowayCNN, LeNet5
from robench_plugins.models.linear import LinearSVM, LogisticRegression
from robench_plugins.models.mlp import MLP
from robench_plugins.models.resnet import ResNet, WideResNet

CIFAR = DataInfo("cifar", (3, 32, 32), 10)
MNIST = DataInfo("mnist", (1, 28, 28), 10)
PAIR = DataInfo("pair", (1, 4, 4), 2)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_table1_cnn_exact():
    """Galloway et al. Table 1: 184,832 parameters, no biases, 32x32x3 -> 2x2x64 -> 10 logits."""
    torch.manual_seed(0)
    net = GallowayCNN().build(CIFAR)
    assert n_params(net) == 184_832
    assert all(p.dim() > 1 for p in net.parameters())  # no biases
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 32, (8, 8), (2, 2)), (32, 64, (6, 6), (2, 2)), (64, 64, (5, 5), (1, 1))]
    x = torch.rand(5, 3, 32, 32)
    feats = net[:-2](x)
    assert feats.shape == (5, 64, 2, 2)
    assert net(x).shape == (5, 10)
    for m in (*convs, net[-1]):  # each filter / output unit scaled to unit norm
        norms = m.weight.flatten(1).norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 3
    assert GallowayCNN().build(MNIST)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_table1_cnn_same_padding_is_tensorflows():
    """SAME, stride 2, kernel 8 on 32 pixels pads 3 and 3 (TF: total 6, extra at the end);
    on 31 pixels the total is 7: 3 before, 4 after."""
    net = GallowayCNN().build(CIFAR)
    pad = net[0]
    assert pad(torch.zeros(1, 1, 32, 32)).shape[-1] == 38
    out = pad(torch.ones(1, 1, 31, 31))
    assert out.shape[-1] == 38 and out[0, 0, 3, :3].sum() == 0 and out[0, 0, 3, 3] == 1
    assert out[0, 0, 3, -5] == 1 and out[0, 0, 3, -4:].sum() == 0


def resnet_params(n: int, width: int = 16, classes: int = 10) -> int:
    """Hand count of a CIFAR ResNet without batch norm (3x3 convs, no biases)."""
    w1, w2, w3 = width, 2 * width, 4 * width
    total = 3 * w1 * 9 + n * 2 * w1 * w1 * 9
    total += (w1 * w2 + w2 * w2) * 9 + (n - 1) * 2 * w2 * w2 * 9
    total += (w2 * w3 + w3 * w3) * 9 + (n - 1) * 2 * w3 * w3 * 9
    return total + w3 * classes + classes


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_fixup_resnet(depth):
    torch.manual_seed(0)
    net = ResNet(ResNet.Options(depth=depth)).build(CIFAR)
    assert n_params(net) == resnet_params((depth - 2) // 6)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    blocks = list(net.blocks)
    assert len(blocks) == 3 * ((depth - 2) // 6)
    for b in blocks:  # Fixup: second conv of each branch and the classifier start at 0
        assert b.conv2.weight.abs().sum() == 0
        fan_out = b.conv1.weight.shape[0] * 9
        expected = math.sqrt(2 / fan_out) / math.sqrt(len(blocks))
        assert b.conv1.weight.std().item() == pytest.approx(expected, rel=0.1)
    assert net.fc.weight.abs().sum() == 0
    if depth != 20:
        return
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(net(x), torch.zeros(2, 10))
    # one SGD step moves the classifier away from zero (the net can learn)
    F.cross_entropy(net(x), torch.tensor([1, 2])).backward()
    assert net.fc.weight.grad.abs().sum() > 0


def test_batchnorm_resnet20():
    net = ResNet(ResNet.Options(depth=20, norm="batch")).build(CIFAR)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 19
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_wide_resnet_presets():
    """WRN-28-10 has 36,479,194 parameters (Zagoruyko & Komodakis); Madry's WRN-34-10
    has no 1x1 shortcut convs: WRN-34-10's 46,160,474 minus 16*160 + 160*320 + 320*640."""
    torch.manual_seed(0)
    assert n_params(WideResNet().build(CIFAR)) == 36_479_194
    madry = WideResNet(WideResNet.Options(style="madry")).build(CIFAR)
    assert n_params(madry) == 46_160_474 - (16 * 160 + 160 * 320 + 320 * 640)
    assert len(madry.units) == 15
    small = WideResNet(WideResNet.Options(style="madry", depth=10, width=1)).build(CIFAR)
    x = torch.rand(3, 3, 32, 32)
    small.eval()
    # per-image standardisation makes the model invariant to a positive affine change
    assert torch.allclose(small(x), small(0.5 * x + 0.25), atol=1e-4)
    assert WideResNet(WideResNet.Options(depth=10, width=1)).build(CIFAR)(x).shape == (3, 10)


def test_lenet5_shapes():
    net = LeNet5().build(MNIST)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert n_params(net) == (6 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) \
        + (120 * 84 + 84) + (84 * 10 + 10)
    with pytest.raises(ValueError, match="12x12"):
        LeNet5().build(DataInfo("digits", (1, 8, 8), 10))


def test_lenet5_on_the_0_255_scale_minus_the_mean_image():
    """input_scale = 255, mean_image: the bare network sees 255 * x minus the mean of
    255 * x_train (by hand), the mean survives a state_dict round trip, and the options
    refuse nonsense."""
    g = torch.Generator().manual_seed(0)
    x_train, x = torch.rand(7, 1, 28, 28, generator=g), torch.rand(3, 1, 28, 28, generator=g)
    model = LeNet5(parse_options(LeNet5.Options, {"input_scale": 255, "mean_image": True}))
    torch.manual_seed(1)
    net = model.build(MNIST)
    model.init_from_data(net, x_train, torch.zeros(7, dtype=torch.long))
    torch.manual_seed(1)
    bare = LeNet5().build(MNIST)
    by_hand = bare(255 * x - 255 * x_train.sum(0) / 7)
    assert torch.allclose(net(x), by_hand, atol=1e-5)
    fresh = model.build(MNIST)
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh(x), net(x))
    scaled = LeNet5(parse_options(LeNet5.Options, {"input_scale": 255})).build(MNIST)
    scaled.net.load_state_dict(bare.state_dict())
    assert torch.allclose(scaled(x), bare(255 * x), atol=1e-5)
    with pytest.raises(ConfigError, match="input_scale"):
        parse_options(LeNet5.Options, {"input_scale": 0})
    with pytest.raises(ConfigError, match="not both"):
        parse_options(LeNet5.Options, {"mean": [0.1], "std": [0.3], "mean_image": True})


def two_class_data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = (torch.arange(n) % 2).long()
    x[y == 1, 0, 0] += 1.0
    return x, y


def test_expert_init_is_class_mean_difference():
    x, y = two_class_data()
    model = LogisticRegression(LogisticRegression.Options(init="expert"))
    net = model.build(PAIR)
    model.init_from_data(net, x, y)
    expected = x[y == 1].flatten(1).mean(0) - x[y == 0].flatten(1).mean(0)
    assert torch.allclose(net.linear.weight[0], expected)
    assert net.linear.bias is None  # the paper's model has no bias
    z = x.flatten(1) @ expected
    logits = net(x)
    assert torch.allclose(logits, torch.stack([-z / 2, z / 2], 1), atol=1e-6)
    # two-logit cross-entropy == sigmoid cross-entropy of the logistic model
    ce = F.cross_entropy(logits, y)
    assert ce.item() == pytest.approx(F.binary_cross_entropy_with_logits(z, y.float()).item(),
                                      rel=1e-5)


def test_expert_init_sees_normalised_inputs():
    x, y = two_class_data()
    opts = LogisticRegression.Options(init="expert", mean=(0.5,), std=(0.25,))
    model = LogisticRegression(opts)
    net = model.build(PAIR)
    model.init_from_data(net, x, y)
    xn = (x - 0.5) / 0.25
    expected = xn[y == 1].flatten(1).mean(0) - xn[y == 0].flatten(1).mean(0)
    assert torch.allclose(net.net.linear.weight[0], expected, atol=1e-6)


def test_expert_init_through_a_parametrisation():
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    x, y = two_class_data()
    model = LogisticRegression(LogisticRegression.Options(init="expert"))
    net = model.build(PAIR)
    parametrize.register_parametrization(net.linear, "weight", Double())
    model.init_from_data(net, x, y)
    expected = x[y == 1].flatten(1).mean(0) - x[y == 0].flatten(1).mean(0)
    assert torch.allclose(net.linear.weight[0], 2 * expected)


def test_default_init_is_truncated_normal():
    torch.manual_seed(0)
    w = LogisticRegression().build(DataInfo("v", (5000,), 2)).linear.weight
    assert w.abs().max() <= 0.2 and 0.08 < w.std() < 0.1


def test_linear_models_refuse_many_classes():
    with pytest.raises(ValueError, match="binary"):
        LogisticRegression().build(MNIST)


def test_svm_hinge_loss():
    model = LinearSVM()
    net = model.build(PAIR)
    assert net.linear.bias is not None and net.linear.weight.abs().sum() == 0
    z = torch.tensor([2.0, 0.5, -0.3, -3.0])
    logits = torch.stack([-z / 2, z / 2], 1)
    y = torch.tensor([1, 1, 1, 0])
    # max(0, 1 - s z): 0, 0.5, 1.3, 0
    assert model.sample_loss(logits, y).tolist() == pytest.approx([0, 0.5, 1.3, 0])


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    src = GallowayCNN().build(CIFAR)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    torch.manual_seed(1)
    loaded = GallowayCNN(GallowayCNN.Options(checkpoint=str(path))).build(CIFAR)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), src(x))
    torch.save(MLP().build(CIFAR).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit"):
        GallowayCNN(GallowayCNN.Options(checkpoint=str(path))).build(CIFAR)


def test_normalisation_inside_the_model(tmp_path):
    torch.manual_seed(0)
    bare = MLP().build(CIFAR)
    path = tmp_path / "mlp.pt"
    torch.save(bare.state_dict(), path)
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    net = MLP(MLP.Options(mean=mean, std=std, checkpoint=str(path))).build(CIFAR)
    x = torch.rand(2, 3, 32, 32)
    xn = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(net(x), bare(xn), atol=1e-6)
    assert not any(k.endswith(("mean", "std")) for k in net.state_dict())
    with pytest.raises(ValueError, match="1 or 3 values"):
        MLP(MLP.Options(mean=(0.1, 0.2), std=(1.0, 1.0))).build(CIFAR)


@pytest.mark.parametrize("cls, raw, message", [
    (ResNet, {"depth": 57}, "6n \\+ 2"),
    (WideResNet, {"depth": 30}, "6n \\+ 4"),
    (WideResNet, {"style": "madry", "dropout": 0.3}, "no dropout"),
    (MLP, {"mean": [0.5]}, "both mean and std"),
    (LogisticRegression, {"init": "expert", "checkpoint": "w.pt"}, "overwrite"),
    (LogisticRegression, {"init": "xavier"}, "expert"),
])
def test_option_errors(cls, raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_options(cls.Options, raw)


def test_all_registered(registry):
    for name in ("mlp", "logistic", "linear_svm", "lenet5", "galloway_cnn", "resnet",
                 "wide_resnet"):
        assert registry.get("model", name).name == name
