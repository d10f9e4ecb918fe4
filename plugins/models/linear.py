"""Binary linear models: logistic regression and the linear SVM (Galloway et al. 2018,
Tanay & Griffin 2016, Tsipras et al. 2019)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from robench import Model

from ._common import CommonOptions, finish


@dataclasses.dataclass(frozen=True)
class LinearOptions(CommonOptions):
    init: Literal["normal", "zeros", "expert"] = dataclasses.field(
        default="normal", metadata={"help": "normal: truncated normal (std `init_std`, cut at "
                                            "2 std); zeros; expert: mean of class-1 inputs "
                                            "minus mean of class-0 inputs (Galloway et al. 2018)"})
    init_std: float = dataclasses.field(
        default=0.1, metadata={"help": "standard deviation of the normal initialisation"})
    bias: bool = dataclasses.field(default=False, metadata={"help": "learn a bias term"})

    def __post_init__(self):
        super().__post_init__()
        if self.init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")
        if self.init == "expert" and self.checkpoint:
            raise ValueError('init = "expert" would overwrite the checkpoint; choose one')


class LogisticRegression(Model):
    """Binary logistic regression ``z = w.x (+ b)``, exposed as two logits ``[-z/2, z/2]``.

    Softmax of the two logits is ``sigmoid(z)``, so the host's cross-entropy is exactly
    the mean sigmoid cross-entropy of Galloway et al. (2018), and every attack library sees an
    ordinary two-class model. The paper's released code has no bias and initialises
    ``w`` from a truncated normal with std 0.1 (the defaults here). ``init = "expert"``
    sets ``w`` to the mean class-1 input minus the mean class-0 input (MNIST 3-vs-7 with
    3 -> 1, 7 -> 0: mean(3s) - mean(7s)) through :meth:`init_from_data`, which the host
    calls with the training split after ``build``.
    """

    name = "logistic"
    Options = LinearOptions

    def build(self, info):
        import math

        from torch import nn

        from ._nets import BinaryLinear

        if info.num_classes != 2:
            raise ValueError(f"{self.name} is a binary model; dataset {info.name!r} has "
                             f"{info.num_classes} classes (select two with `classes`)")
        net = BinaryLinear(math.prod(info.input_shape), self.options.bias)
        if self.options.init == "zeros":
            nn.init.zeros_(net.linear.weight)
        else:
            s = self.options.init_std
            nn.init.trunc_normal_(net.linear.weight, std=s, a=-2 * s, b=2 * s)
        if net.linear.bias is not None:
            nn.init.zeros_(net.linear.bias)
        return finish(net, self.options, info)

    def init_from_data(self, module, x_train, y_train):
        """Expert initialisation (``init = "expert"``): ``w = mean(x | y = 1) -
        mean(x | y = 0)``, computed on the inputs the linear layer sees (after in-model
        normalisation); the bias, if any, stays 0. Works through parametrisations added
        by defenses (it writes the underlying ``original`` weight)."""
        if self.options.init != "expert":
            return
        import torch
        from torch.nn.utils import parametrize

        from ._nets import BinaryLinear, Normalized

        x = x_train
        wrappers = [m for m in module.modules() if isinstance(m, Normalized)]
        with torch.no_grad():
            if wrappers:
                x = wrappers[0].normalize(x)
            x = x.flatten(1).float()
            if not (y_train == 1).any() or not (y_train == 0).any():
                raise ValueError("expert initialisation needs training samples of both classes")
            w = x[y_train == 1].mean(0) - x[y_train == 0].mean(0)
            linear = next(m for m in module.modules() if isinstance(m, BinaryLinear)).linear
            if parametrize.is_parametrized(linear, "weight"):
                target = linear.parametrizations.weight.original
            else:
                target = linear.weight
            target.copy_(w.view_as(target))


class LinearSVM(LogisticRegression):
    """Linear soft-margin SVM: the same two-logit linear model, trained on the hinge loss.

    The model's :meth:`sample_loss` is the hinge loss ``max(0, 1 - s z)`` with ``s = +1``
    for class 1 and ``-1`` for class 0 (``z`` is the logit difference); the host uses it
    instead of cross-entropy. The SVM's regulariser ``lambda/2 ||w||^2`` is the
    ``weight_decay`` defense (norm ``l2``, ``coefficient = lambda``; Tanay & Griffin's lambda
    sweep, Tsipras et al.'s soft-margin SVM). Bias on by default, initialised at zero.
    """

    name = "linear_svm"

    @dataclasses.dataclass(frozen=True)
    class Options(LinearOptions):
        init: Literal["normal", "zeros", "expert"] = dataclasses.field(
            default="zeros", metadata={"help": "zeros; normal: truncated normal (std `init_std`); "
                                               "expert: class-1 mean minus class-0 mean"})
        bias: bool = dataclasses.field(default=True, metadata={"help": "learn a bias term"})

    def sample_loss(self, logits, y):
        """Hinge loss per sample of the score ``z = logits[:, 1] - logits[:, 0]``."""
        z = logits[:, 1] - logits[:, 0]
        sign = y.to(z.dtype) * 2 - 1
        return (1 - sign * z).clamp_min(0)
