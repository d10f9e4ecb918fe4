"""Built-in reporters plugins."""

from robench import hookimpl


@hookimpl
def robench_register_reporters(register):
    """Register the built-in reporters."""
