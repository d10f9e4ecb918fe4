"""Worst case over the attacks of one threat model (the ensemble robust accuracy)."""

from __future__ import annotations

import dataclasses

from robench import Metric

from .accuracy import DefaultIntervalOptions


@dataclasses.dataclass(frozen=True)
class WorstCaseOptions(DefaultIntervalOptions):
    order: tuple[str, ...] = dataclasses.field(
        default=(), metadata={"help": "attack labels in the order used to record which "
                                      "attack broke a sample first (others follow in "
                                      "order of appearance)"})
    per_sample: bool = dataclasses.field(
        default=False, metadata={"help": "also emit one worst_case_robust row per sample "
                                         "and eps, with the attack that broke it"})


class WorstCase(Metric):
    """Robust accuracy against the worst of every attack of the same threat model.

    Per cell, threat model, eps and sample, the sample counts as robust only if it is
    clean-correct and *every* attack of that threat model failed on it, as AutoAttack
    reports its ensemble: "for security, performance is no better than the worst of any
    particular case" (Galloway et al. 2018, section 4; the cross-paper conventions of
    docs/experiments.md). Attacks are combined on the eps values and samples all of them
    share.

    Rows: ``worst_case_accuracy`` (``attack = "worst_case"``, the attacks in ``note``) in
    both conventions (``convention``: unconditional over all samples, conditional over
    clean-correct ones); ``worst_case_auc``, the normalised area under that curve on the
    eps grid common to the data set's cells (as ``auc``, with ``eps_min``/``eps_max``);
    per attack ``broken_first`` (fraction of samples it broke
    first, in ``order``) and ``broken_only`` (fraction no other attack broke); with
    ``per_sample``, ``worst_case_robust`` rows carrying ``broken_by`` per sample. The
    accuracy, area and per-sample rows are better higher (``higher_is_better``); the
    ``broken_*`` fractions have no direction. ``bootstrap`` (default 1000) adds
    intervals over samples.
    """

    name = "worst_case"
    higher_is_better = None
    Options = WorstCaseOptions

    def from_results(self, results):
        from . import _tables

        o = self.options
        return _tables.or_none(_tables.worst_case(
            results, order=o.order, per_sample=o.per_sample, bootstrap=o.bootstrap,
            level=o.level, seed=o.seed))
