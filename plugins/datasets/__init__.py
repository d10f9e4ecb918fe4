"""Built-in datasets plugins."""

from robench import hookimpl

from .digits import Digits


@hookimpl
def robench_register_datasets(register):
    """Register the built-in datasets."""
    register(Digits)
