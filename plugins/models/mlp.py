"""A fully connected network with ReLU hidden layers."""

from __future__ import annotations

import dataclasses

from robench import Model

from ._common import CommonOptions, finish


@dataclasses.dataclass(frozen=True)
class MLPOptions(CommonOptions):
    hidden: tuple[int, ...] = dataclasses.field(
        default=(128,), metadata={"help": "width of each hidden layer"})
    bias: bool = dataclasses.field(default=True, metadata={"help": "use bias terms"})

    def __post_init__(self):
        super().__post_init__()
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer widths must be positive, got {list(self.hidden)}")


class MLP(Model):
    """Multi-layer perceptron: flatten, then Linear+ReLU per hidden layer, then logits."""

    name = "mlp"
    Options = MLPOptions

    def build(self, info):
        import math

        from torch import nn

        layers: list = [nn.Flatten()]
        width = math.prod(info.input_shape)
        for h in self.options.hidden:
            layers += [nn.Linear(width, h, bias=self.options.bias), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, info.num_classes, bias=self.options.bias))
        return finish(nn.Sequential(*layers), self.options, info)
