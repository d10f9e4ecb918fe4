"""Built-in datasets plugins."""

from robench import hookimpl

from .digits import Digits
from .images import CIFAR10, MNIST, FashionMNIST
from .tsipras import Tsipras


@hookimpl
def robench_register_datasets(register):
    """Register the built-in datasets."""
    for cls in (Digits, MNIST, FashionMNIST, CIFAR10, Tsipras):
        register(cls)
