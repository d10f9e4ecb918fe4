"""The README's fixed-budget and minimal attack examples, extracted from README.md as
they stand, run through the conformance kit."""

from __future__ import annotations

import re
import sys
import types

import pytest
import torch
from attack_fixtures import digits_mlp, first_test_digits
from conftest import REPO

import robench
from robench.testing import check_attack

MARKERS = {"# fixed-budget attack": robench.FixedBudgetAttack,
           "# minimal attack": robench.MinimalAttack}
"""First line of each README code block -> the base class its attack must subclass."""


def readme_example(marker: str) -> str:
    """The ```python block of README.md whose first line is ``marker``."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    found = [b for b in blocks if b.startswith(marker + "\n")]
    assert len(found) == 1, f"README.md has {len(found)} blocks starting with {marker!r}"
    return found[0]


def example_attack(marker: str) -> robench.Attack:
    """An instance of the attack that the README block ``marker`` defines, executed as a
    module of its own (dataclasses look their module up in ``sys.modules``)."""
    module = types.ModuleType("readme_example_" + re.sub(r"\W", "_", marker.strip("# ")))
    sys.modules[module.__name__] = module
    exec(compile(readme_example(marker), f"README.md ({marker})", "exec"), module.__dict__)
    classes = [v for v in vars(module).values() if isinstance(v, type)
               and issubclass(v, MARKERS[marker]) and v is not MARKERS[marker]]
    assert len(classes) == 1, classes
    return classes[0]()


@pytest.mark.parametrize("marker,epsilons", [("# fixed-budget attack", [0.0, 0.5, 2.0]),
                                             ("# minimal attack", [0.0, 0.05, 0.2])])
def test_readme_attack_example_passes_the_conformance_kit(marker, epsilons):
    attack = example_attack(marker)
    model, (x, y) = digits_mlp(), first_test_digits(32)
    report = check_attack(attack, model, x, y, epsilons)
    assert report.ok, report.summary()
    passed = {c.name for c in report.checks if c.passed}
    assert {"result", "bounds", "budget", "eps0", "seed"} <= passed, report.summary()
    assert report.accuracy[-1] < report.accuracy[0] - 0.2, report.summary()  # it attacks
    if isinstance(attack, robench.MinimalAttack):
        assert "monotone" in passed, report.summary()
    else:
        assert "grid" in passed, report.summary()


def test_readme_examples_are_short():
    for marker in MARKERS:
        code = [line for line in readme_example(marker).splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        assert len(code) <= 25, (marker, len(code))


def test_readme_minimal_example_finds_the_exact_fgsm_threshold_on_a_linear_model():
    """On logits W x + b with two classes the sign step moves the logit difference
    linearly, so the smallest fooling step on the grid is the first grid value above
    margin / ||w1 - w0||_1 (inputs far from the bounds)."""
    attack = example_attack("# minimal attack")
    d = 20
    from attack_fixtures import linear_two_logit

    model = linear_two_logit(d)
    x = 0.45 + 0.1 * torch.rand(30, d, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    result = attack.run(model, x, y, [1.0], bounds=(-10.0, 10.0))
    w = model.weight[1] - model.weight[0]
    margin = (model(x)[:, 1] - model(x)[:, 0]).abs()
    threshold = margin / w.abs().sum()
    grid = torch.linspace(0.01, 1.0, 100)
    expected = torch.tensor([float(grid[grid > t][0]) if (grid > t).any() else float("inf")
                             for t in threshold.tolist()])
    found = result.details["minimal_distances"]
    assert torch.allclose(found, expected, atol=1e-5)
