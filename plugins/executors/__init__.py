"""Built-in executors plugins."""

from robench import hookimpl


@hookimpl
def robench_register_executors(register):
    """Register the built-in executors."""
