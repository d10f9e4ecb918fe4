"""Built-in defenses plugins."""

from robench import hookimpl


@hookimpl
def robench_register_defenses(register):
    """Register the built-in defenses."""
