"""Binarized weights: every weight is +-alpha in the forward pass (Galloway et al. 2018)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from robench import Defense


@dataclasses.dataclass(frozen=True)
class BinarizedOptions:
    scale: Literal["mean", "none"] = dataclasses.field(
        default="mean", metadata={"help": "mean: sign(w) * mean|w| per layer (Galloway et al.'s "
                                          "code, binary weight networks); none: sign(w)"})
    layers: Literal["all", "conv", "linear"] = dataclasses.field(
        default="all", metadata={"help": "which layers' weights to binarise"})


class Binarized(Defense):
    """Trains a model whose weights are binary, through a straight-through estimator.

    Galloway et al. (2018) (section 3, Fig. 1(b)) trains a logistic regression whose
    784 weights are binarised: its released code (``--bits 1``) uses
    ``sign(w / E) * E`` with ``E = mean(|w|)`` held constant and the gradient of
    ``sign`` replaced by the identity, so Adam updates the latent real weights ``w``
    while the model computes with ``+-E``. This defense does the same for every Linear
    and Conv2d weight (biases stay real), as a ``torch.nn.utils.parametrize``
    parametrisation registered in ``wrap_model``: ``module.weight`` is the binary
    weight, ``module.parametrizations.weight.original`` the latent one (what weight
    decay and the expert initialisation act on). Reference (released code, MNIST
    3-vs-7): clean 0.9696, FGSM eps = 0.25 accuracy 0.0.
    """

    name = "binarized"
    Options = BinarizedOptions

    def wrap_model(self, model, ctx):
        from torch import nn
        from torch.nn.utils import parametrize

        from ._weights import SignSTE

        kinds = {"all": (nn.Conv2d, nn.Linear), "conv": (nn.Conv2d,),
                 "linear": (nn.Linear,)}[self.options.layers]
        layers = [m for m in model.modules() if isinstance(m, kinds)]
        if not layers:
            raise ValueError(f"binarized: the model has no {self.options.layers} layers")
        for m in layers:
            parametrize.register_parametrization(m, "weight", SignSTE(self.options.scale))
        return model
