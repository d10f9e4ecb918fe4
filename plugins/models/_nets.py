"""The networks behind the built-in model plugins (private; imports torch).

Imported only inside ``build`` methods, so listing plugins never imports torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Normalized(nn.Module):
    """``net((x - mean) / std)`` with ``mean``/``std`` broadcast over channels (images)
    or features (vectors); they are buffers kept out of the state_dict."""

    def __init__(self, net: nn.Module, mean, std, input_shape):
        super().__init__()
        channels = input_shape[0]
        for name, values in (("mean", mean), ("std", std)):
            if len(values) not in (1, channels):
                raise ValueError(f"{name} needs 1 or {channels} values, got {len(values)}")
        shape = (1, -1) + (1,) * (len(input_shape) - 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape),
                             persistent=False)
        self.net = net

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The input as the wrapped network sees it."""
        return (x - self.mean) / self.std

    def forward(self, x):
        return self.net(self.normalize(x))


class ScaledCentered(nn.Module):
    """``net(scale * x - mean)``: the input rescaled (``scale = 255``: the 0..255 scale of
    8-bit data) minus the mean image of the rescaled training inputs. ``mean`` is a
    persistent buffer (zero until :meth:`fit`), so a cached model keeps it."""

    def __init__(self, net: nn.Module, scale: float, input_shape):
        super().__init__()
        self.scale = scale
        self.register_buffer("mean", torch.zeros(input_shape))
        self.net = net

    def fit(self, x_train: torch.Tensor) -> None:
        """Set ``mean`` to the mean of ``scale * x_train`` over the samples."""
        with torch.no_grad():
            self.mean.copy_((self.scale * x_train.float()).mean(0))

    def forward(self, x):
        return self.net(self.scale * x - self.mean)


# ------------------------------------------------------------------------ linear models


class BinaryLinear(nn.Module):
    """A linear score ``z = w.x (+ b)`` exposed as the two logits ``[-z/2, z/2]``.

    Softmax over these logits is ``sigmoid(z)`` for class 1, so cross-entropy equals the
    sigmoid cross-entropy of a logistic regression, and every attack library sees an
    ordinary two-class model whose logit difference is ``z``.
    """

    def __init__(self, in_features: int, bias: bool):
        super().__init__()
        self.linear = nn.Linear(in_features, 1, bias=bias)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The scalar score ``z`` of each input (positive votes for class 1)."""
        return self.linear(x.flatten(1)).squeeze(1)

    def forward(self, x):
        z = self.score(x)[:, None]
        return torch.cat([-z / 2, z / 2], dim=1)


# ------------------------------------------------------------------------------- CNNs


class TFSamePad(nn.Module):
    """Zero padding of TensorFlow's ``padding="SAME"``: the output has ``ceil(n / s)``
    positions and an odd padding total puts the extra zero at the bottom/right."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        pads = []
        for n in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(n / self.stride) - 1) * self.stride + self.kernel - n, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


class FlattenHWC(nn.Module):
    """Flatten NCHW feature maps in TensorFlow's NHWC order (so weights converted from
    the paper's TensorFlow checkpoints keep their meaning)."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1)


def galloway_cnn(in_channels: int, height: int, width: int, num_classes: int) -> nn.Sequential:
    """Galloway et al. (2018) Table 1 : conv 8x8/2 SAME 32, conv 6x6/2 VALID 64,
    conv 5x5/1 VALID 64, ReLU after each, flatten, linear; no biases.

    Initialisation: truncated normal (std 0.1, cut at 2 std), then every filter (each
    output unit's weights, linear layer included) scaled to unit L2 norm.
    """
    convs = [TFSamePad(8, 2), nn.Conv2d(in_channels, 32, 8, stride=2, bias=False), nn.ReLU(),
             nn.Conv2d(32, 64, 6, stride=2, bias=False), nn.ReLU(),
             nn.Conv2d(64, 64, 5, stride=1, bias=False), nn.ReLU()]
    h, w = math.ceil(height / 2), math.ceil(width / 2)
    h, w = (h - 6) // 2 + 1, (w - 6) // 2 + 1
    h, w = h - 4, w - 4
    if h < 1 or w < 1:
        raise ValueError(f"the Table-1 CNN needs inputs of at least 24x24, got {height}x{width}")
    net = nn.Sequential(*convs, FlattenHWC(), nn.Linear(64 * h * w, num_classes, bias=False))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.1, a=-0.2, b=0.2)
                norms = m.weight.flatten(1).norm(dim=1).clamp_min(1e-12)
                m.weight.div_(norms.view(-1, *([1] * (m.weight.dim() - 1))))
    return net


def lenet5(in_channels: int, height: int, width: int, num_classes: int,
           activation: str) -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998) as usually run on MNIST: conv 5x5 pad 2 -> 6, 2x2 max
    pool, conv 5x5 -> 16, 2x2 max pool, linear 120, 84, classes."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    h, w = (height // 2 - 4) // 2, (width // 2 - 4) // 2
    if h < 1 or w < 1:
        raise ValueError(f"LeNet-5 needs inputs of at least 12x12, got {height}x{width}")
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), act(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), act(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * h * w, 120), act(), nn.Linear(120, 84), act(),
        nn.Linear(84, num_classes))


# ----------------------------------------------------------------------- CIFAR ResNets


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a parameter-free shortcut (He et al. 2016 option A:
    strided subsampling, zero channels appended, as in the Fixup code)."""

    def __init__(self, cin: int, cout: int, stride: int, batch_norm: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
        self.stride, self.extra = stride, cout - cin

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.extra:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth ``6n + 2`` (20, 56, 110): a 3x3 stem, three
    stages of ``n`` basic blocks (width, 2 width, 4 width channels, strides 1, 2, 2),
    global average pooling and a linear layer.

    ``norm = "fixup"``: no batch norm, Fixup initialisation (Zhang et al. 2019; Wen
    et al. 2020, appendix D.3 without Fixup's scalar multipliers and biases): the first conv of
    each residual branch He-normal scaled by ``L^(-1/2)`` (``L`` blocks, two layers per
    branch), the second conv and the classifier initialised to zero.
    ``norm = "batch"``: batch norm after every conv, He-normal init.
    """

    def __init__(self, depth: int, in_channels: int, num_classes: int, norm: str,
                 width: int = 16):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"ResNet depth must be 6n + 2 (20, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        batch_norm = norm == "batch"
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage and i == 0 else 1, batch_norm))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        if batch_norm:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        else:
            scale = len(blocks) ** -0.5
            for block in blocks:
                w = block.conv1.weight
                nn.init.normal_(w, std=math.sqrt(2 / (w.shape[0] * w[0, 0].numel())) * scale)
                nn.init.zeros_(block.conv2.weight)
            nn.init.zeros_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(out.mean(dim=(2, 3)))


# ------------------------------------------------------------------------- Wide ResNets


def _conv3x3(cin: int, cout: int, stride: int, tf_same: bool) -> nn.Module:
    if tf_same:
        return nn.Sequential(TFSamePad(3, stride), nn.Conv2d(cin, cout, 3, stride, bias=False))
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class WideBlock(nn.Module):
    """Pre-activation residual unit of a wide ResNet.

    ``style = "wrn"`` (Zagoruyko & Komodakis 2016): BN-ReLU-conv-BN-ReLU-(dropout)-conv;
    when the shape changes the shortcut is a 1x1 strided conv of the activated input.
    ``style = "madry"`` (Madry et al.'s CIFAR-10 challenge ``model.py``): leaky ReLU
    0.1, TensorFlow SAME padding, BN epsilon 1e-3; the first unit activates before the
    residual split; the shortcut is strided average pooling with zero channels padded
    on both sides.
    """

    def __init__(self, cin: int, cout: int, stride: int, style: str, dropout: float,
                 activate_before_residual: bool):
        super().__init__()
        madry = style == "madry"
        eps = 1e-3 if madry else 1e-5
        self.madry, self.stride, self.cin, self.cout = madry, stride, cin, cout
        self.activate_before = activate_before_residual
        self.slope = 0.1 if madry else 0.0
        self.bn1 = nn.BatchNorm2d(cin, eps=eps)
        self.conv1 = _conv3x3(cin, cout, stride, madry)
        self.bn2 = nn.BatchNorm2d(cout, eps=eps)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = _conv3x3(cout, cout, 1, madry)
        self.shortcut = None
        if not madry and (cin != cout or stride != 1):
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def _act(self, x):
        return F.leaky_relu(x, self.slope) if self.slope else F.relu(x)

    def forward(self, x):
        pre = self._act(self.bn1(x))
        out = self.conv2(self.dropout(self._act(self.bn2(self.conv1(pre)))))
        if not self.madry:
            return out + (self.shortcut(pre) if self.shortcut is not None else x)
        orig = pre if self.activate_before else x
        if self.cin != self.cout:
            if self.stride > 1:
                orig = F.avg_pool2d(orig, self.stride, self.stride)
            half = (self.cout - self.cin) // 2
            orig = F.pad(orig, (0, 0, 0, 0, half, self.cout - self.cin - half))
        return out + orig


class PerImageStandardization(nn.Module):
    """TensorFlow's ``per_image_standardization``: ``(x - mean) / max(std, 1/sqrt(N))``
    over each image's N values (Madry et al.'s model does this in the graph)."""

    def forward(self, x):
        flat = x.flatten(1)
        mean = flat.mean(1)
        std = flat.std(1, unbiased=False).clamp_min(1 / math.sqrt(flat.shape[1]))
        return (x - mean.view(-1, 1, 1, 1)) / std.view(-1, 1, 1, 1)


class WideResNet(nn.Module):
    """Wide ResNet of depth ``6n + 4`` and width ``k``: a 3x3 stem with 16 channels,
    three stages of ``n`` :class:`WideBlock` units with 16k, 32k, 64k channels (strides
    1, 2, 2), BN-ReLU, global average pooling, linear. WRN-28-10: ``n = 4``; Madry's
    CIFAR-10 challenge model is WRN-34-10 in ``style = "madry"`` (5 units per stage).
    """

    def __init__(self, depth: int, width: int, in_channels: int, num_classes: int,
                 style: str, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"wide ResNet depth must be 6n + 4 (28, 34, ...), got {depth}")
        n = (depth - 4) // 6
        madry = style == "madry"
        self.standardize = PerImageStandardization() if madry else nn.Identity()
        self.conv = _conv3x3(in_channels, 16, 1, madry)
        units, cin = [], 16
        for stage, cout in enumerate((16 * width, 32 * width, 64 * width)):
            for i in range(n):
                units.append(WideBlock(cin, cout, 2 if stage and i == 0 else 1, style, dropout,
                                       activate_before_residual=madry and stage == 0 and i == 0))
                cin = cout
        self.units = nn.Sequential(*units)
        self.bn = nn.BatchNorm2d(cin, eps=1e-3 if madry else 1e-5)
        self.slope = 0.1 if madry else 0.0
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if madry:  # TF: normal(0, sqrt(2 / (k * k * out_channels)))
                    nn.init.normal_(m.weight, std=math.sqrt(2 / (m.weight[0, 0].numel()
                                                                 * m.out_channels)))
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if madry:  # TF uniform_unit_scaling(1.0)
            bound = math.sqrt(3 / cin)
            nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        out = self.units(self.conv(self.standardize(x)))
        out = self.bn(out)
        out = F.leaky_relu(out, self.slope) if self.slope else F.relu(out)
        return self.fc(out.mean(dim=(2, 3)))
