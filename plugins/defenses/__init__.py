"""Built-in defenses plugins."""

from robench import hookimpl

from .adversarial_training import AdversarialTraining
from .binarized import Binarized
from .feature_selection import FeatureSelection
from .label_smoothing import LabelSmoothing
from .spectral import SpectralNorm
from .weight_decay import WeightDecay


@hookimpl
def robench_register_defenses(register):
    """Register the built-in defenses."""
    for cls in (WeightDecay, AdversarialTraining, SpectralNorm, LabelSmoothing, Binarized,
                FeatureSelection):
        register(cls)
