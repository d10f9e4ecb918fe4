"""Built-in models plugins."""

from robench import hookimpl

from .cnn import GallowayCNN, LeNet5
from .linear import LinearSVM, LogisticRegression
from .mlp import MLP
from .resnet import ResNet, WideResNet


@hookimpl
def robench_register_models(register):
    """Register the built-in models."""
    for cls in (MLP, LogisticRegression, LinearSVM, LeNet5, GallowayCNN, ResNet, WideResNet):
        register(cls)
