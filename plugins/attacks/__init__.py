"""Built-in attacks plugins."""

from robench import hookimpl


@hookimpl
def robench_register_attacks(register):
    """Register the built-in attacks."""
