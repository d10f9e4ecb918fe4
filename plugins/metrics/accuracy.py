"""Accuracy metrics of the result frame: clean, robust, curve area, breakdown, distance.

Definitions follow the cross-paper conventions of docs/experiments.md (Galloway et al. 2018,
section 4: sweep the budget "until accuracy is reduced to less than chance" and compare
models by the "area under all curves"). The computations live in :mod:`._tables`.
"""

from __future__ import annotations

import dataclasses

from robench import Metric


@dataclasses.dataclass(frozen=True)
class IntervalOptions:
    bootstrap: int = dataclasses.field(
        default=0, metadata={"help": "bootstrap resamples for a confidence interval over "
                                     "samples (lower/upper columns); 0 = no interval"})
    level: float = dataclasses.field(
        default=0.95, metadata={"help": "confidence level of the bootstrap interval"})
    seed: int = dataclasses.field(
        default=0, metadata={"help": "seed of the bootstrap resampling"})

    def __post_init__(self):
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0 resamples, got {self.bootstrap}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")


DEFAULT_RESAMPLES = 1000
"""Bootstrap resamples of the metrics that reports show with intervals by default."""


@dataclasses.dataclass(frozen=True)
class DefaultIntervalOptions(IntervalOptions):
    bootstrap: int = dataclasses.field(
        default=DEFAULT_RESAMPLES,
        metadata={"help": "bootstrap resamples for a confidence interval over samples "
                          "(lower/upper columns); 0 = no interval"})


class CleanAccuracy(Metric):
    """Clean accuracy per cell: ``pred_clean == label`` over the distinct data samples.

    Rows: ``metric = "clean_accuracy"``, the cell columns, ``n`` (samples) and, with
    ``bootstrap > 0``, a percentile bootstrap interval over samples (``lower``/``upper``).
    Samples shared by several attacks count once; generated (noise) inputs are ignored.
    """

    name = "clean_accuracy"
    higher_is_better = True
    Options = IntervalOptions

    def from_results(self, results):
        from . import _tables

        o = self.options
        return _tables.or_none(_tables.clean_accuracy(results, bootstrap=o.bootstrap,
                                                      level=o.level, seed=o.seed))


class RobustAccuracy(Metric):
    """Robust accuracy per (cell, attack, epsilon), in both conventions.

    A sample is robust when it is classified correctly clean and under the attack (for a
    targeted attack, under every target tried). Column ``convention``:
    ``unconditional`` = mean over all samples, a misclassified clean image counting as a
    failure (Galloway et al. 2018, the accuracy-vs-eps curves of section 4); ``conditional`` = mean
    over clean-correct samples (Wen et al. 2020, Table 6 "PGD" rows). ``n`` is the number of
    samples averaged; ``bootstrap > 0`` (default 1000) adds a percentile bootstrap
    interval over samples (``lower``/``upper``), which reports show.
    """

    name = "robust_accuracy"
    higher_is_better = True
    Options = DefaultIntervalOptions

    def from_results(self, results):
        from . import _tables

        o = self.options
        return _tables.or_none(_tables.robust_accuracy(results, bootstrap=o.bootstrap,
                                                       level=o.level, seed=o.seed))


@dataclasses.dataclass(frozen=True)
class CurveOptions(IntervalOptions):
    compare: tuple[str, ...] = dataclasses.field(
        default=("dataset", "attack", "threat_model"),
        metadata={"help": "columns whose equal values make curves compared: they share "
                          "one eps grid (the eps values every one of them has)"})
    until_chance: bool = dataclasses.field(
        default=False, metadata={"help": "stop the common grid at the first eps where "
                                         "every compared curve is at or below chance"})
    num_classes: int = dataclasses.field(
        default=0, metadata={"help": "number of classes for chance = 1/num_classes; "
                                     "0 = from the data set (results.attrs) or inferred "
                                     "from the largest label/prediction"})

    def __post_init__(self):
        allowed = {"dataset", "model", "defense", "seed", "cell", "attack", "threat_model"}
        unknown = sorted(set(self.compare) - allowed)
        if unknown:
            raise ValueError(f"compare: unknown column(s) {unknown}; use {sorted(allowed)}")
        super().__post_init__()
        if self.num_classes < 0 or self.num_classes == 1:
            raise ValueError(f"num_classes must be 0 (infer) or >= 2, got {self.num_classes}")


def _num_classes(options, results) -> int:
    """The option if set, else ``results.attrs["num_classes"]`` if the host put it
    there, else inferred from the largest label or prediction in the frame."""
    from . import _tables

    return (options.num_classes or int(results.attrs.get("num_classes", 0))
            or _tables.infer_num_classes(results))


class AUC(Metric):
    """Normalised area under robust accuracy vs eps on the compared curves' common grid.

    The cross-paper conventions (Galloway et al. 2018, section 4): curves that are
    compared (same ``compare`` columns: by default the same dataset and attack) are
    integrated with the trapezoid rule over one eps grid, the eps values *every* compared
    curve has (eps values some curve lacks are dropped and counted in ``note``), and the
    area is divided by the grid's range, so a model at 100% everywhere scores 1.0; the
    range is reported as ``eps_min``/``eps_max``. No clean-accuracy point is prepended:
    eps = 0 contributes only if the attack's grid contains it (the accuracy measured at a
    zero budget, i.e. the clean accuracy). Both conventions (``convention`` column).
    ``bootstrap > 0`` adds an interval over samples: the area is linear in the curve, so
    it is the mean of per-sample areas, which the bootstrap resamples.
    """

    name = "auc"
    higher_is_better = True
    Options = CurveOptions

    def from_results(self, results):
        from . import _tables

        o = self.options
        samples = _tables.robust_samples(results)
        if samples.empty:
            return None
        accuracy = _tables.accuracy_from_samples(samples, _tables.CELL + _tables.ATTACK
                                                 + ["epsilon"], "robust_accuracy")
        n_classes = _num_classes(o, results) if o.until_chance else None
        return _tables.or_none(_tables.auc(
            accuracy, compare=list(o.compare), num_classes=n_classes,
            until_chance=o.until_chance, samples=samples, bootstrap=o.bootstrap,
            level=o.level, seed=o.seed))


@dataclasses.dataclass(frozen=True)
class ChanceOptions:
    num_classes: int = dataclasses.field(
        default=0, metadata={"help": "number of classes for chance = 1/num_classes; "
                                     "0 = from the data set (results.attrs) or inferred "
                                     "from the largest label/prediction"})

    def __post_init__(self):
        if self.num_classes < 0 or self.num_classes == 1:
            raise ValueError(f"num_classes must be 0 (infer) or >= 2, got {self.num_classes}")


class BreakdownPoint(Metric):
    """The first eps at which robust accuracy is at or below chance, per curve.

    Galloway et al. (2018) section 4 sweeps "until accuracy is reduced to less than chance"; this is
    where each (cell, attack) curve gets there (a grid value; NaN with a note if never).
    Chance is ``1/num_classes`` (column ``chance``). Both conventions.
    """

    name = "breakdown_point"
    higher_is_better = True
    Options = ChanceOptions

    def from_results(self, results):
        from . import _tables

        accuracy = _tables.robust_accuracy(results)
        if accuracy.empty:
            return None
        return _tables.or_none(_tables.breakdown_point(accuracy,
                                                       _num_classes(self.options, results)))


class MedianDistance(Metric):
    """Median minimal adversarial distance per (cell, attack), both conventions.

    Per sample (and target), the smallest host-measured distance of a successful
    adversarial over the sweep (0 for untargeted attacks on misclassified clean inputs,
    ``inf`` if the attack never succeeded), then the median over samples
    (``median_distance``) and the fraction with an adversarial (``adversarial_found``).
    For fixed-budget attacks it is an upper bound on the true minimal distance (Galloway et al.
    2018, section 4, threat models compared by their own norms).
    """

    name = "median_distance"
    higher_is_better = True

    def from_results(self, results):
        from . import _tables

        return _tables.or_none(_tables.median_distance(results))


class AttackSuccess(Metric):
    """Attack success rate and mean perturbation per (cell, attack, eps) over attempts.

    Galloway et al. (2018), section 6.3.2, Table 2 (JSMA): every (sample, target) row of
    the data inputs is one attempt, misclassified sources included. Rows
    ``success_rate``, ``mean_distance`` (all attempts) and ``mean_distance_success``
    (successful attempts only; for L0 attacks the distance is the fraction of input
    values changed, the table's "perturbed fraction"), with ``n`` attempts.
    """

    name = "attack_success"
    higher_is_better = False

    def from_results(self, results):
        from . import _tables

        return _tables.or_none(_tables.attack_success(results))
