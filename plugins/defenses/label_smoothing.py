"""Label smoothing: cross-entropy against softened one-hot targets."""

from __future__ import annotations

import dataclasses

from robench import Defense


@dataclasses.dataclass(frozen=True)
class LabelSmoothingOptions:
    smoothing: float = dataclasses.field(
        default=0.1, metadata={"help": "alpha: the target is (1 - alpha) * one_hot + "
                                       "alpha / K"})

    def __post_init__(self):
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")


class LabelSmoothing(Defense):
    """Replaces the data loss by cross-entropy with smoothed targets (Szegedy et al. 2016).

    The target of a sample of class ``y`` is ``(1 - alpha) * one_hot(y) + alpha / K``
    (``torch.nn.functional.cross_entropy(..., label_smoothing=alpha)``). Galloway et al. (2018)
    mentions label smoothing for its CIFAR-10 CNN; its released code has it commented
    out . It replaces the per-sample loss, so it composes with adversarial
    training (which weights the clean and adversarial halves of the batch) in any order.
    """

    name = "label_smoothing"
    Options = LabelSmoothingOptions

    def sample_loss(self, model, logits, y, ctx):
        import torch.nn.functional as F

        return F.cross_entropy(logits, y, label_smoothing=self.options.smoothing,
                               reduction="none")
