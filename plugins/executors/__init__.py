"""Built-in executors plugins."""

from robench import hookimpl

from .local import LocalExecutor


@hookimpl
def robench_register_executors(register):
    """Register the built-in executors."""
    register(LocalExecutor)
