"""Built-in models plugins."""

from robench import hookimpl

from .cnn import GallowayCNN, LeNet5
from .imported import ImportedModel
from .linear import LinearSVM, LogisticRegression
from .mlp import MLP
from .resnet import ResNet, WideResNet
from .robustbench import RobustBenchModel


@hookimpl
def robench_register_models(register):
    """Register the built-in models."""
    for cls in (MLP, LogisticRegression, LinearSVM, LeNet5, GallowayCNN, ResNet, WideResNet,
                ImportedModel, RobustBenchModel):
        register(cls)
