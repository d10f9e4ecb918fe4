"""Built-in metrics plugins."""

from robench import hookimpl

from .accuracy import (
    AUC,
    AttackSuccess,
    BreakdownPoint,
    CleanAccuracy,
    MedianDistance,
    RobustAccuracy,
)
from .fooling import Fooling
from .generalisation import GEGap, LossVariation, Margins
from .linear import BoundaryTilting, RobustFeatures
from .loss_gradient import LossGradient
from .optimality import Optimality
from .paired import PairedDifference
from .perturbation_rate import PerturbationRate
from .seeds import SeedSummary
from .spectrum import SingularValues, SpectrumChange
from .worst_case import WorstCase

METRICS = (AUC, AttackSuccess, BoundaryTilting, BreakdownPoint, CleanAccuracy, Fooling, GEGap,
           LossGradient, LossVariation, Margins, MedianDistance, Optimality, PairedDifference,
           PerturbationRate, RobustAccuracy, RobustFeatures, SeedSummary, SingularValues,
           SpectrumChange, WorstCase)
"""Every built-in metric class, registered by :func:`robench_register_metrics`."""


@hookimpl
def robench_register_metrics(register):
    """Register the built-in metrics."""
    for metric in METRICS:
        register(metric)
