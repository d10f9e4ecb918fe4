"""Convolutional networks: Galloway et al.'s Table-1 CNN and LeNet-5."""

from __future__ import annotations

import dataclasses
from typing import Literal

from robench import Model

from ._common import CommonOptions, finish


def _image_shape(info, model: str) -> tuple[int, int, int]:
    if not info.is_image:
        raise ValueError(f"{model} needs image inputs (C, H, W); dataset {info.name!r} has "
                         f"shape {info.input_shape}")
    return info.input_shape


class GallowayCNN(Model):
    """Galloway et al.'s four-layer fully convolutional CNN (Table 1).

    conv 8x8, 32 filters, stride 2, SAME -> ReLU -> conv 6x6, 64, stride 2, VALID ->
    ReLU -> conv 5x5, 64, stride 1, VALID -> ReLU -> flatten -> linear; no biases, no
    batch norm, no pooling. On 32x32x3 inputs: 2x2x64 = 256 features and 184,832
    parameters. Weights: truncated normal (std 0.1), then each filter (and each output
    unit of the linear layer) scaled to unit L2 norm, as cleverhans' layers used by the
    released code do. SAME padding follows TensorFlow (extra zero at the bottom/right)
    and the flatten uses TensorFlow's HWC order, so converted checkpoints of the paper's
    models load unchanged (``checkpoint`` option).
    """

    name = "galloway_cnn"
    Options = CommonOptions

    def build(self, info):
        from ._nets import galloway_cnn

        return finish(galloway_cnn(*_image_shape(info, self.name), info.num_classes),
                      self.options, info)


@dataclasses.dataclass(frozen=True)
class LeNetOptions(CommonOptions):
    activation: Literal["relu", "tanh"] = dataclasses.field(
        default="relu", metadata={"help": "hidden nonlinearity (tanh is closer to 1998)"})


class LeNet5(Model):
    """LeNet-5 for small grey images: conv 5x5 (padding 2) 6 -> max pool -> conv 5x5 16
    -> max pool -> linear 120 -> 84 -> classes (LeCun et al. 1998, as run on MNIST;
    Tanay & Griffin's LeNet weight-decay experiment)."""

    name = "lenet5"
    Options = LeNetOptions

    def build(self, info):
        from ._nets import lenet5

        net = lenet5(*_image_shape(info, self.name), info.num_classes, self.options.activation)
        return finish(net, self.options, info)
