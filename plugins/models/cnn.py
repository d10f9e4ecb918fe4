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
    input_scale: float = dataclasses.field(
        default=1.0, metadata={"help": "multiply the inputs by this inside the model (255: "
                                       "the 0..255 scale of 8-bit images)"})
    mean_image: bool = dataclasses.field(
        default=False, metadata={"help": "subtract the mean training image (on the "
                                         "input_scale scale) inside the model"})

    def __post_init__(self):
        super().__post_init__()
        if self.input_scale <= 0:
            raise ValueError(f"input_scale must be > 0, got {self.input_scale}")
        if self.mean and (self.input_scale != 1 or self.mean_image):
            raise ValueError("give either mean/std or input_scale/mean_image, not both")


class LeNet5(Model):
    """LeNet-5 for small grey images: conv 5x5 (padding 2) 6 -> max pool -> conv 5x5 16
    -> max pool -> linear 120 -> 84 -> classes (LeCun et al. 1998, as run on MNIST;
    Tanay & Griffin's LeNet weight-decay experiment).

    Data stay in [0, 1]; ``input_scale`` and ``mean_image`` give the network the input
    scale it was trained on: Tanay & Griffin (2016)'s LeNet (MatConvNet's MNIST example)
    sees 0..255 pixel values minus the mean training image (``input_scale = 255,
    mean_image = true``; the mean is computed from the training split when the model is
    built and is stored with its weights).
    """

    name = "lenet5"
    Options = LeNetOptions

    def build(self, info):
        from ._nets import ScaledCentered, lenet5

        net = lenet5(*_image_shape(info, self.name), info.num_classes, self.options.activation)
        net = finish(net, self.options, info)
        if self.options.input_scale != 1 or self.options.mean_image:
            net = ScaledCentered(net, self.options.input_scale, info.input_shape)
        return net

    def init_from_data(self, module, x_train, y_train):
        """With ``mean_image``: store the mean of the rescaled training images."""
        if not self.options.mean_image:
            return
        from ._nets import ScaledCentered

        next(m for m in module.modules() if isinstance(m, ScaledCentered)).fit(x_train)
