"""Built-in executors plugins."""

from robench import hookimpl

from .dask import DaskExecutor
from .local import LocalExecutor
from .processes import ProcessesExecutor


@hookimpl
def robench_register_executors(register):
    """Register the built-in executors."""
    register(LocalExecutor)
    register(ProcessesExecutor)
    register(DaskExecutor)
