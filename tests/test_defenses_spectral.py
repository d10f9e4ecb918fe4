"""spectral_norm: the operator clipping of Wen et al. (2020) (Sedghi et al.), checked against
singular values measured independently on the unrolled circular-convolution matrix;
torch's kernel spectral_norm scaled to the strength."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench import DataInfo, LoadedData, TrainingContext
from robench.config import TrainingSpec
from robench.training import train
from robench_plugins.defenses._weights import clip_conv, conv_transfer
from robench_plugins.defenses.spectral import SpectralNorm

INFO = DataInfo("tiny", (2, 6, 6), 3)


def circular_matrix(weight: torch.Tensor, n: int) -> torch.Tensor:
    """The (cout*n*n) x (cin*n*n) matrix of the stride-1 circular cross-correlation with
    ``weight`` on n x n inputs, built column by column from basis images."""
    cin, k = weight.shape[1], weight.shape[-1]
    basis = torch.eye(cin * n * n, dtype=weight.dtype).view(-1, cin, n, n)
    out = F.conv2d(F.pad(basis, (0, k - 1, 0, k - 1), mode="circular"), weight)
    return out.flatten(1).T


def operator_norm(weight: torch.Tensor, n: int) -> float:
    return torch.linalg.svdvals(circular_matrix(weight.double(), n)).max().item()


def tiny_cnn(seed=0, gain=4.0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(5 * 3 * 3, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(gain)  # norms well above the strengths tested
    return net


def ctx(epochs=1):
    return TrainingContext(info=INFO, device="cpu", epochs=epochs,
                           generator=torch.Generator().manual_seed(0), attack=None)


def test_fft_singular_values_equal_the_unrolled_matrix():
    torch.manual_seed(1)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    fft = torch.linalg.svdvals(conv_transfer(w, (5, 5))).flatten().sort().values
    full = torch.linalg.svdvals(circular_matrix(w, 5)).sort().values
    assert torch.allclose(fft, full, atol=1e-9)


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_operator_clipping_bounds_every_layer(c):
    net = tiny_cnn()
    defense = SpectralNorm(SpectralNorm.Options(strength=c))
    net = defense.wrap_model(net, ctx())
    assert defense.input_sizes == {"0": (6, 6), "2": (6, 6)}
    before = [operator_norm(net[i].weight, 6) for i in (0, 2)]
    assert min(before) > 1.5 * c
    defense.after_epoch(net, 1, ctx())
    for i in (0, 2):
        after = operator_norm(net[i].weight, 6)
        assert 0.9 * c <= after <= 1.01 * c
    assert torch.linalg.svdvals(net[5].weight.double()).max() <= 1.01 * c
    assert net[0].bias is not None and net(torch.rand(1, 2, 6, 6)).shape == (1, 3)


def strided_circular_matrix(weight: torch.Tensor, n: int, stride: int) -> torch.Tensor:
    """The matrix of the circular cross-correlation with ``stride``, from torch's own
    strided conv2d on basis images (independent of the stride-1 matrix)."""
    cin, k = weight.shape[1], weight.shape[-1]
    basis = torch.eye(cin * n * n, dtype=weight.dtype).view(-1, cin, n, n)
    out = F.conv2d(F.pad(basis, (0, k - 1, 0, k - 1), mode="circular"), weight,
                   stride=stride)
    return out.flatten(1).T


@pytest.mark.parametrize("stride", [2, 3])
def test_a_strided_operator_is_rows_of_the_stride_1_one(stride):
    """The argument for clipping strided layers as stride 1: the strided matrix is a row
    subset of the stride-1 matrix, so its largest singular value is at most that one's."""
    torch.manual_seed(3)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    full, strided = circular_matrix(w, 6), strided_circular_matrix(w, 6, stride)
    rows = torch.arange(6 * 6).view(6, 6)[::stride, ::stride].flatten()
    rows = (torch.arange(4)[:, None] * 36 + rows[None, :]).flatten()
    assert torch.equal(strided, full[rows])
    assert (torch.linalg.svdvals(strided).max()
            <= torch.linalg.svdvals(full).max() + 1e-12)


@pytest.mark.parametrize("c", [0.5, 1.0])
def test_clipped_strided_layer_is_bounded_as_the_metric_measures_it(c):
    """After clipping, the strided layer's exact operator norm (the unrolled strided
    matrix, and the metric's polyphase measurement of it) is at most c."""
    from robench_plugins.operators import conv_singular_values

    defense = SpectralNorm(SpectralNorm.Options(strength=c))
    net = defense.wrap_model(tiny_cnn(), ctx())
    weight = net[2].weight.detach().double()
    assert torch.linalg.svdvals(strided_circular_matrix(weight, 6, 2)).max() > c
    defense.clip(net)
    weight = net[2].weight.detach().double()
    exact = torch.linalg.svdvals(strided_circular_matrix(weight, 6, 2)).max().item()
    measured = conv_singular_values(weight, (6, 6), stride=(2, 2)).max().item()
    assert measured == pytest.approx(exact, rel=1e-9)
    assert exact <= c * (1 + 1e-5)


def test_clipping_keeps_small_singular_values():
    """Clipping changes only the spectrum above c (before the crop to the kernel
    support): on a kernel already inside the ball nothing moves."""
    torch.manual_seed(2)
    w = torch.randn(4, 3, 3, 3) * 0.05
    assert operator_norm(w, 6) < 1
    assert torch.allclose(clip_conv(w, (6, 6), 1.0), w, atol=1e-6)


def test_sedghi_without_rescale_is_close_to_the_bound():
    net = tiny_cnn()
    w = net[0].weight.detach()
    raw = clip_conv(w, (6, 6), 1.0, exact=False)
    exact = clip_conv(w, (6, 6), 1.0, exact=True)
    assert operator_norm(exact, 6) <= 1.0 + 1e-5
    assert operator_norm(raw, 6) == pytest.approx(1.0, rel=0.25)


def test_clipping_after_every_epoch_of_the_training_loop():
    net = tiny_cnn(gain=1.0)
    defense = SpectralNorm(SpectralNorm.Options(strength=0.5))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 2, 6, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    data = LoadedData(INFO, x, y, x[:16], y[:16])
    net = defense.wrap_model(net, ctx(2))
    from robench_plugins.models.mlp import MLP

    history = train(net, MLP(), data, TrainingSpec(epochs=2, batch_size=16, lr=0.05),
                    [defense], ctx(2), progress=False)
    assert history.epoch.max() == 2
    for i in (0, 2):
        assert operator_norm(net[i].weight, 6) <= 0.505


def test_kernel_method_is_torch_spectral_norm_times_strength():
    net = tiny_cnn()
    defense = SpectralNorm(SpectralNorm.Options(method="kernel", strength=2.0,
                                                power_iterations=5))
    net = defense.wrap_model(net, ctx())
    net.train()
    for _ in range(10):  # power iterations run in training-mode forward passes
        net(torch.rand(4, 2, 6, 6))
    for i in (0, 2, 5):
        sigma = torch.linalg.svdvals(net[i].weight.detach().flatten(1)).max().item()
        assert sigma == pytest.approx(2.0, rel=0.01)
    assert hasattr(net[0].parametrizations.weight, "original")


def test_operator_refuses_a_parametrised_weight():
    from robench_plugins.defenses.binarized import Binarized

    net = Binarized().wrap_model(tiny_cnn(), ctx())
    with pytest.raises(ValueError, match="parametrised"):
        SpectralNorm().wrap_model(net, ctx())


def test_registered(registry):
    for name in ("spectral_norm", "label_smoothing", "binarized"):
        assert registry.get("defense", name).name == name
