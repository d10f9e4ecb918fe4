"""Weight decay as an explicit loss term (L2 or L1), summed or averaged over the weights."""

from __future__ import annotations

import dataclasses
from typing import Literal

from robench import Defense


@dataclasses.dataclass(frozen=True)
class WeightDecayOptions:
    norm: Literal["l2", "l1"] = dataclasses.field(
        default="l2",
        metadata={"help": "l2: coefficient * 0.5 * R(w^2); l1: coefficient * R(|w|), "
                          "R being the reduction"})
    coefficient: float = dataclasses.field(
        default=1e-3, metadata={"help": "lambda, multiplying the penalty"})
    reduction: Literal["sum", "mean"] = dataclasses.field(
        default="sum",
        metadata={"help": "R: sum over every penalised value, or their mean (the sum "
                          "divided by their count)"})
    parameters: Literal["weights", "all"] = dataclasses.field(
        default="weights",
        metadata={"help": "weights: every parameter with 2+ dimensions (linear and conv "
                          "kernels, not biases); all: every parameter"})

    def __post_init__(self):
        if self.coefficient < 0:
            raise ValueError(f"coefficient must be >= 0, got {self.coefficient}")


class WeightDecay(Defense):
    """Adds ``coefficient * 0.5 * R(w^2)`` (L2) or ``coefficient * R(|w|)`` (L1).

    ``R`` is the ``reduction`` over every penalised value of every penalised parameter:
    ``sum`` or ``mean`` (the sum divided by the number of values). The L2 form carries
    the factor 0.5 of TensorFlow's ``tf.nn.l2_loss`` (``sum(w^2) / 2``), so with
    ``reduction = "sum"`` ``coefficient`` is the lambda of ``lambda * l2_loss(W)``, the
    convention of Galloway, Tanay & Taylor (2018), Adversarial Training Versus Weight
    Decay. Their released logistic-regression code penalises L1 as
    ``lambda * mean(|w|)``: ``norm = "l1", reduction = "mean"`` (784 times weaker than the
    sum on MNIST's 784 weights). The penalty is part of the loss (not the optimizer's
    ``weight_decay``), so it acts the same under Adam and SGD. ``parameters = "weights"``
    leaves biases unpenalised.
    """

    name = "weight_decay"
    Options = WeightDecayOptions

    def loss_term(self, model, ctx):
        params = [p for p in model.parameters()
                  if p.requires_grad and (self.options.parameters == "all" or p.dim() > 1)]
        if not params:
            return None
        if self.options.norm == "l2":
            total = 0.5 * sum(p.pow(2).sum() for p in params)
        else:
            total = sum(p.abs().sum() for p in params)
        if self.options.reduction == "mean":
            total = total / sum(p.numel() for p in params)
        return self.options.coefficient * total
