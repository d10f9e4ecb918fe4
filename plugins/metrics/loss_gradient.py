"""The gradient of the loss with respect to the input, for the first test inputs
(Tsipras et al. 2019, Fig. 5 and Fig. 8)."""

from __future__ import annotations

import dataclasses

from robench import Metric


@dataclasses.dataclass(frozen=True)
class LossGradientOptions:
    samples: int = dataclasses.field(
        default=10, metadata={"help": "how many test inputs (the first ones of the test "
                                      "split) get their gradient stored"})

    def __post_init__(self):
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")


class LossGradient(Metric):
    """The input gradient of each sample's cross-entropy loss, one row per input feature.

    Tsipras, Santurkar, Engstrom, Turner & Madry (2019), Robustness May Be at Odds with
    Accuracy, section 3.3, Fig. 5 and Fig. 8: the gradients of adversarially trained
    models align with perceptually relevant features of the input, those of standard
    models look like noise. For the first ``samples`` test inputs ``x`` with labels
    ``y``: ``d CE(model(x), y) / d x`` (the loss of each input alone, the model in eval
    mode, no preprocessing), as rows ``loss_gradient`` with the columns ``sample``
    (index in the test split), ``feature`` (index in the flattened input), ``label``
    and ``input`` (the input's value there, so the figure can show the input beside its
    gradient). The ``loss_gradients`` reporter draws them.
    """

    name = "loss_gradient"
    higher_is_better = None
    Options = LossGradientOptions

    def from_cell(self, cell):
        import numpy as np
        import pandas as pd
        import torch
        import torch.nn.functional as F

        n = min(self.options.samples, len(cell.data.x_test))
        x = cell.data.x_test[:n].to(cell.device).clone().requires_grad_(True)
        y = cell.data.y_test[:n].to(cell.device)
        loss = F.cross_entropy(cell.model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        grad = grad.detach().flatten(1).cpu().double().numpy()
        features = grad.shape[1]
        return pd.DataFrame({
            "metric": self.name,
            "value": grad.ravel(),
            "sample": np.repeat(np.arange(n), features),
            "feature": np.tile(np.arange(features), n),
            "label": np.repeat(y.cpu().numpy(), features),
            "input": x.detach().flatten(1).cpu().double().numpy().ravel()})
