"""Built-in metrics plugins."""

from robench import hookimpl

from .accuracy import AUC, BreakdownPoint, CleanAccuracy, MedianDistance, RobustAccuracy
from .fooling import Fooling
from .seeds import SeedSummary
from .worst_case import WorstCase

METRICS = (AUC, BreakdownPoint, CleanAccuracy, Fooling, MedianDistance, RobustAccuracy,
           SeedSummary, WorstCase)
"""Every built-in metric class, registered by :func:`robench_register_metrics`."""


@hookimpl
def robench_register_metrics(register):
    """Register the built-in metrics."""
    for metric in METRICS:
        register(metric)
