"""Built-in metrics plugins."""

from robench import hookimpl


@hookimpl
def robench_register_metrics(register):
    """Register the built-in metrics."""
