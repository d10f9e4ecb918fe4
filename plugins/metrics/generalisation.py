"""Generalisation gap, margin/probability/loss distributions, loss variation (Wen et al. 2020)."""

from __future__ import annotations

import dataclasses
from typing import Any

from robench import Metric

DEFAULT_ATTACK = "foolbox.LinfPGD"
"""The attack of the attacked gap and the loss variation unless the user names another."""

DEFAULT_ATTACK_OPTIONS = {"steps": 10, "abs_stepsize": 2 / 255, "random_start": True}
"""Its options by default: 10 steps of 2/255 from a random start (Wen et al. 2020's PGD)."""


@dataclasses.dataclass(frozen=True)
class AttackedOptions:
    eps: float = dataclasses.field(
        default=8 / 255, metadata={"help": "budget of the attack (0 = no attack)"})
    attack: str = dataclasses.field(
        default=DEFAULT_ATTACK, metadata={"help": "attack plugin making the adversarials",
                                          "component": "attack",
                                          "options_field": "attack_options"})
    attack_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_ATTACK_OPTIONS),
        metadata={"help": "options of the attack plugin, e.g. "
                          "{ steps = 10, abs_stepsize = \"2/255\" }"})
    samples: int = dataclasses.field(
        default=1000, metadata={"help": "first N inputs of each split that are attacked"})

    def __post_init__(self):
        if self.eps < 0 or self.samples < 1:
            raise ValueError(f"attack options need eps >= 0 and samples >= 1; got {self}")


def _attack(metric, cell):
    """The user's attack, built by the host's factory."""
    return cell.attack(metric.options.attack, dict(metric.options.attack_options))


class GEGap(Metric):
    """Generalisation gap, clean and under attack (Wen et al. 2020, section 5.1, Table 6).

    ``accuracy_gap`` = train minus test accuracy; ``loss_gap`` = test minus train loss
    (Table 6: 0.316 - 0.092 = 0.224), with the four figures they come from
    (``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss``). Clean rows
    (``condition = "clean"``) come from the last epoch of the training history, which the
    host measures in eval mode on the full training set (not the running training loss);
    a cell without history is evaluated afresh. With ``eps > 0``, ``condition = "attacked"``
    rows repeat them on the adversarials of the first ``samples`` inputs of each split,
    made by ``attack`` (default: foolbox's LinfPGD, 10 steps of 2/255 from a random
    start) through the host's attack factory and seeded by the cell's seed; these
    accuracies are unconditional (every attacked input counts, misclassified clean ones included),
    unlike Table 6's "PGD acc" column, which ``robust_accuracy``'s conditional
    convention reproduces from the result frame.
    """

    name = "ge_gap"
    higher_is_better = None
    Options = AttackedOptions

    def from_cell(self, cell):
        import pandas as pd

        from . import _weights

        o = self.options
        rows = _weights.clean_gap(cell.history, cell.model, cell.data, cell.device)
        if o.eps > 0:
            rows += _weights.attacked_gap(cell.model, cell.data, cell.device, eps=o.eps,
                                          attack=_attack(self, cell), samples=o.samples,
                                          seed=int(cell.cell["seed"]))
        return pd.DataFrame(rows)


class LossVariation(Metric):
    """Average maximal loss variation under a Linf attack (Wen et al. 2020, appendix B.5).

    For each of the first ``samples`` test inputs, loss(adversarial) - loss(clean), the
    adversarial made by ``attack`` (default: foolbox's LinfPGD) within ``eps``; rows
    ``loss_variation_mean`` and ``loss_variation_std`` (over inputs), with ``epsilon``.
    Smaller for models that adversarial training has made smoother.
    """

    name = "loss_variation"
    Options = AttackedOptions
    higher_is_better = False

    def from_cell(self, cell):
        import pandas as pd

        from . import _weights

        o = self.options
        if o.eps == 0:
            return None
        return pd.DataFrame(_weights.loss_variation(
            cell.model, cell.data, cell.device, eps=o.eps, attack=_attack(self, cell),
            samples=o.samples, seed=int(cell.cell["seed"])))


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
    higher_is_better = None
    Options = MarginOptions

    def from_cell(self, cell):
        from . import _weights

        o = self.options
        d = cell.data
        splits = {"train": (d.x_train[:o.samples], d.y_train[:o.samples]),
                  "test": (d.x_test[:o.samples], d.y_test[:o.samples])}
        return _weights.margin_rows(cell.model, splits, cell.device, bins=o.bins,
                                    quantiles=o.quantiles, loss_max=o.loss_max)
