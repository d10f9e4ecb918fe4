"""Built-in metrics plugins."""

from robench import hookimpl

from .accuracy import AUC, BreakdownPoint, CleanAccuracy, MedianDistance, RobustAccuracy


@hookimpl
def robench_register_metrics(register):
    """Register the built-in metrics."""
    for metric in (AUC, BreakdownPoint, CleanAccuracy, MedianDistance, RobustAccuracy):
        register(metric)
