"""Weight decay as an explicit loss term (L2 or L1)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from robench import Defense


@dataclasses.dataclass(frozen=True)
class WeightDecayOptions:
    norm: Literal["l2", "l1"] = dataclasses.field(
        default="l2",
        metadata={"help": "l2: coefficient * 0.5 * sum(w^2); l1: coefficient * sum|w|"})
    coefficient: float = dataclasses.field(
        default=1e-3, metadata={"help": "lambda, multiplying the penalty"})
    parameters: Literal["weights", "all"] = dataclasses.field(
        default="weights",
        metadata={"help": "weights: every parameter with 2+ dimensions (linear and conv "
                          "kernels, not biases); all: every parameter"})

    def __post_init__(self):
        if self.coefficient < 0:
            raise ValueError(f"coefficient must be >= 0, got {self.coefficient}")


class WeightDecay(Defense):
    """Adds ``coefficient * 0.5 * sum(w^2)`` (L2) or ``coefficient * sum(|w|)`` (L1).

    The L2 form follows the papers' convention (paper 000 A1/A2: ``l2 * 0.5 * ||W||^2``,
    i.e. TensorFlow's ``tf.nn.l2_loss``), so ``coefficient`` is their lambda directly. The
    penalty is part of the loss (not the optimizer's ``weight_decay``), so it acts the
    same under Adam and SGD. ``parameters = "weights"`` leaves biases unpenalised.
    """

    name = "weight_decay"
    Options = WeightDecayOptions

    def loss_term(self, model, ctx):
        params = [p for p in model.parameters()
                  if p.requires_grad and (self.options.parameters == "all" or p.dim() > 1)]
        if not params:
            return None
        if self.options.norm == "l2":
            return self.options.coefficient * 0.5 * sum(p.pow(2).sum() for p in params)
        return self.options.coefficient * sum(p.abs().sum() for p in params)
