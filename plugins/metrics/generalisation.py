"""Generalisation gap, margin/probability/loss distributions, loss variation (Wen et al. 2020)."""

from __future__ import annotations

import dataclasses

from robench import Metric


@dataclasses.dataclass(frozen=True)
class PGDOptions:
    eps: float = dataclasses.field(
        default=8 / 255, metadata={"help": "Linf budget of the PGD attack (0 = no attack)"})
    steps: int = dataclasses.field(default=10, metadata={"help": "PGD steps"})
    step_size: float = dataclasses.field(default=2 / 255, metadata={"help": "PGD step size"})
    samples: int = dataclasses.field(
        default=1000, metadata={"help": "first N inputs of each split that are attacked"})

    def __post_init__(self):
        if self.eps < 0 or self.step_size <= 0 or self.steps < 1 or self.samples < 1:
            raise ValueError("PGD options need eps >= 0, step_size > 0, steps >= 1 and "
                             f"samples >= 1; got {self}")


class GEGap(Metric):
    """Generalisation gap, clean and under attack (Wen et al. 2020, section 5.1, Table 6).

    ``accuracy_gap`` = train minus test accuracy; ``loss_gap`` = test minus train loss
    (Table 6: 0.316 - 0.092 = 0.224), with the four figures they come from
    (``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss``). Clean rows
    (``condition = "clean"``) come from the last epoch of the training history, which the
    host measures in eval mode on the full training set (not the running training loss);
    a cell without history is evaluated afresh. With ``eps > 0``, ``condition = "pgd"``
    rows repeat them on the PGD adversarials (foolbox LinfPGD, random start, seeded by the
    cell's seed) of the first ``samples`` inputs of each split; these accuracies are
    unconditional (every attacked input counts, misclassified clean ones included),
    unlike Table 6's "PGD acc" column, which ``robust_accuracy``'s conditional
    convention reproduces from the result frame.
    """

    name = "ge_gap"
    Options = PGDOptions

    def from_cell(self, cell):
        import pandas as pd

        from . import _weights

        o = self.options
        rows = _weights.clean_gap(cell.history, cell.model, cell.data, cell.device)
        if o.eps > 0:
            rows += _weights.attacked_gap(cell.model, cell.data, cell.device, eps=o.eps,
                                          steps=o.steps, step_size=o.step_size,
                                          samples=o.samples, seed=int(cell.cell["seed"]))
        return pd.DataFrame(rows)


class LossVariation(Metric):
    """Average maximal loss variation under a Linf attack (Wen et al. 2020, appendix B.5).

    For each of the first ``samples`` test inputs, loss(PGD adversarial) - loss(clean),
    PGD maximising the loss within ``eps``; rows ``loss_variation_mean`` and
    ``loss_variation_std`` (over inputs), with ``epsilon``. Smaller for models that
    adversarial training has made smoother.
    """

    name = "loss_variation"
    Options = PGDOptions

    def from_cell(self, cell):
        import pandas as pd

        from . import _weights

        o = self.options
        if o.eps == 0:
            return None
        return pd.DataFrame(_weights.loss_variation(
            cell.model, cell.data, cell.device, eps=o.eps, steps=o.steps,
            step_size=o.step_size, samples=o.samples, seed=int(cell.cell["seed"])))


@dataclasses.dataclass(frozen=True)
class MarginOptions:
    samples: int = dataclasses.field(
        default=5000, metadata={"help": "first N inputs of each split used"})
    bins: int = dataclasses.field(default=40, metadata={"help": "histogram bins"})
    quantiles: int = dataclasses.field(
        default=21, metadata={"help": "evenly spaced quantiles stored (0 and 1 included)"})
    loss_max: float = dataclasses.field(
        default=10.0, metadata={"help": "upper end of the loss histogram (larger losses "
                                        "fall in its last bin)"})

    def __post_init__(self):
        if self.samples < 1 or self.bins < 1 or self.quantiles < 2 or self.loss_max <= 0:
            raise ValueError("margins options need samples >= 1, bins >= 1, quantiles >= 2 "
                             f"and loss_max > 0; got {self}")


class Margins(Metric):
    """Logit-margin, true-class probability and loss distributions on train and test.

    Wen et al. (2020) section 5.2.1: Fig. 4 (margins) and Fig. 5a/b (histograms).

    Margin = logit of the true class minus the largest other logit (the margin operator
    of section 3; negative when misclassified). Per ``split`` and quantity
    (``logit_margin``, ``true_class_probability``, ``loss``): ``<q>_mean``, ``<q>_std``,
    ``<q>_median``, ``<q>_quantile`` rows (``quantile`` column; comparable across models)
    and ``<q>_hist`` rows (fraction per bin, ``bin_left``/``bin_right``; probability over
    [0, 1], loss over [0, ``loss_max``], margin over the cell's symmetric range).
    """

    name = "margins"
    Options = MarginOptions

    def from_cell(self, cell):
        from . import _weights

        o = self.options
        d = cell.data
        splits = {"train": (d.x_train[:o.samples], d.y_train[:o.samples]),
                  "test": (d.x_test[:o.samples], d.y_test[:o.samples])}
        return _weights.margin_rows(cell.model, splits, cell.device, bins=o.bins,
                                    quantiles=o.quantiles, loss_max=o.loss_max)
