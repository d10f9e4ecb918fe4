"""Residual networks: CIFAR ResNets (with or without batch norm) and wide ResNets."""

from __future__ import annotations

import dataclasses
from typing import Literal

from robench import Model

from ._common import CommonOptions, finish
from .cnn import _image_shape


@dataclasses.dataclass(frozen=True)
class ResNetOptions(CommonOptions):
    depth: int = dataclasses.field(
        default=56, metadata={"help": "6n + 2: 20, 56 or 110 (Wen et al. 2020, uses 56 and 110)"})
    norm: Literal["fixup", "batch"] = dataclasses.field(
        default="fixup", metadata={"help": "fixup: no batch norm, Fixup initialisation "
                                           "(Wen et al. 2020); batch: batch norm after each conv"})
    width: int = dataclasses.field(
        default=16, metadata={"help": "channels of the first stage (doubled per stage)"})

    def __post_init__(self):
        super().__post_init__()
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 (20, 56, 110, ...), got {self.depth}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


class ResNet(Model):
    """CIFAR ResNet of depth 6n + 2 (He et al. 2016): ResNet-20, -56, -110.

    ``norm = "fixup"`` (default) is Wen et al.'s network (appendix D.3): no batch norm,
    Fixup initialisation (Zhang et al. 2019) with Fixup's scalar multipliers and biases
    omitted (they change the layers' spectral norms), no dropout. The residual branches'
    first convs are He-normal scaled by ``L^(-1/2)`` (``L`` = number of blocks), their
    second convs and the classifier start at zero. Shortcuts are parameter-free
    (strided subsampling plus zero channels), so every weight is a conv or the final
    linear layer. ``norm = "batch"`` gives the standard batch-normalised ResNet.
    """

    name = "resnet"
    Options = ResNetOptions

    def build(self, info):
        from ._nets import CifarResNet

        c, _, _ = _image_shape(info, self.name)
        o = self.options
        return finish(CifarResNet(o.depth, c, info.num_classes, o.norm, o.width), o, info)


@dataclasses.dataclass(frozen=True)
class WideResNetOptions(CommonOptions):
    style: Literal["wrn", "madry"] = dataclasses.field(
        default="wrn", metadata={"help": "wrn: Zagoruyko & Komodakis (WRN-28-10 by default); "
                                         "madry: Madry et al.'s CIFAR-10 challenge model "
                                         "(WRN-34-10 by default)"})
    depth: int | None = dataclasses.field(
        default=None, metadata={"help": "6n + 4 (n units per stage); default 28 for wrn, "
                                        "34 for madry"})
    width: int = dataclasses.field(default=10, metadata={"help": "widening factor k"})
    dropout: float = dataclasses.field(
        default=0.0, metadata={"help": "dropout between the convs of each unit (wrn only)"})

    def __post_init__(self):
        super().__post_init__()
        if self.depth is not None and (self.depth < 10 or (self.depth - 4) % 6):
            raise ValueError(f"depth must be 6n + 4 (28, 34, ...), got {self.depth}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.style == "madry" and self.dropout:
            raise ValueError("Madry et al.'s model has no dropout")


class WideResNet(Model):
    """Wide ResNet with pre-activation units, configurable depth (6n + 4) and width k.

    Two presets through ``style``: ``"wrn"`` is Zagoruyko & Komodakis' WRN (default
    WRN-28-10; 1x1 conv shortcuts, ReLU); ``"madry"`` is the wide ResNet of Madry et
    al.'s CIFAR-10 challenge (``model.py``: 5 units per stage = WRN-34-10, per-image
    standardisation inside the model, leaky ReLU 0.1, TensorFlow SAME padding, shortcuts
    by average pooling and zero channel padding), Galloway et al.'s "WRN"/"WRN-Nat".
    """

    name = "wide_resnet"
    Options = WideResNetOptions

    def build(self, info):
        from ._nets import WideResNet as Net

        c, _, _ = _image_shape(info, self.name)
        o = self.options
        depth = o.depth or (34 if o.style == "madry" else 28)
        return finish(Net(depth, o.width, c, info.num_classes, o.style, o.dropout), o, info)
