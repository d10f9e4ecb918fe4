"""Built-in models plugins."""

from robench import hookimpl

from .mlp import MLP


@hookimpl
def robench_register_models(register):
    """Register the built-in models."""
    register(MLP)
