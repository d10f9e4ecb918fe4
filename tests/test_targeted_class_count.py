"""Attacks that target every other class in turn (APGD-T, FAB-T) learn the number of
classes from the data: here five, where torchattacks' default is ten (APGD-T's targeted
DLR loss needs at least four)."""

import importlib

import numpy as np
import pytest
import torch
from torch import nn

from robench.config import component_spec
from robench.counting import PassCounter

CLASSES = 5
BOUNDS = (0.0, 1.0)


@pytest.fixture
def five_classes():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(12, 1, 3, 3, generator=gen)  # torchattacks' APGD takes images
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 16), nn.ReLU(),
                          nn.Linear(16, CLASSES)).eval()
    with torch.no_grad():
        y = model(x).argmax(1)  # every input clean-correct: all of them get attacked
    return model, x, y


def _attack(registry, name, **options):
    return component_spec("attack", name, options).create(registry)


@pytest.mark.parametrize("name, options", [
    ("torchattacks.APGDT", {"steps": 5}),
    ("torchattacks.FAB", {"steps": 5, "multi_targeted": True}),
])
def test_targeted_ensembles_run_on_a_five_class_model(registry, five_classes, name,
                                                       options, monkeypatch):
    model, x, y = five_classes
    attack = _attack(registry, name, **options)
    module = importlib.import_module(attack.entry["module"])
    library_class = getattr(module, attack.entry["class"])
    seen = []

    class Recording(library_class):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["n_classes"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(module, attack.entry["class"], Recording)
    result = attack.run(model, x, y, [0.3], bounds=BOUNDS,
                        generator=torch.Generator().manual_seed(0))
    adversarial = result.adversarials.take(0)
    assert seen == [CLASSES]
    assert adversarial.shape == x.shape
    assert float((adversarial - x).abs().max()) <= 0.3 + 1e-6


def test_the_library_default_of_ten_classes_fails_on_five(five_classes):
    """Why the number matters: APGD-T with its default picks target ranks that a
    five-class output does not have."""
    import torchattacks

    model, x, y = five_classes
    with pytest.raises(IndexError):
        torchattacks.APGDT(model, eps=0.3, steps=2)(x, y)


def test_the_class_count_probe_is_not_an_attack_pass(registry, five_classes, monkeypatch):
    """A stand-in library class that makes exactly one forward per input: the count is
    one, not one plus the probe of the number of classes."""
    model, x, y = five_classes
    attack = _attack(registry, "torchattacks.APGDT")
    module = importlib.import_module(attack.entry["module"])

    class OneForward:
        def __init__(self, model, **kwargs):
            self.model = model

        def __call__(self, images, labels):
            with torch.no_grad():
                self.model(images)
            return images

    monkeypatch.setattr(module, attack.entry["class"], OneForward)
    counter = PassCounter(model, x)
    result = attack.run(counter, x, y, [0.1], bounds=BOUNDS)
    counter.reset()
    result.adversarials.take(0)
    np.testing.assert_array_equal(counter.forward_counts, np.ones(len(x)))
