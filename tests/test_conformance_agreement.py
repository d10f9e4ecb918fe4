"""Cross-library agreement and a closed form: the adapters drive the libraries alike."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import accuracy, digits_mlp, first_test_digits, linear_two_logit, make

BOUNDS = (0.0, 1.0)
EPS = [0.02, 0.05, 0.1, 0.2]


def robust_accuracy(name, model, x, y, epsilons, **options):
    """Accuracy on the adversarials of ``name`` at each eps, clipped as the host does."""
    result = make(name, **options).run(model, x, y, epsilons, bounds=BOUNDS,
                                       generator=torch.Generator().manual_seed(0))
    return [accuracy(model, adv.clamp(*BOUNDS), y) for adv in result.adversarials]


@pytest.fixture(scope="module")
def data():
    x, y = first_test_digits(200)
    return digits_mlp(), x, y


def test_fgsm_agrees_across_libraries(data):
    model, x, y = data
    curves = {name: robust_accuracy(name, model, x, y, EPS)
              for name in ("torchattacks.FGSM", "foolbox.FGSM", "art.FastGradientMethod")}
    reference = curves["torchattacks.FGSM"]
    assert reference[0] > reference[-1] + 0.3  # the attack bites
    for name, curve in curves.items():
        assert max(abs(a - b) for a, b in zip(curve, reference)) <= 0.01, (name, curves)


def test_pgd_without_random_start_agrees_across_libraries(data):
    model, x, y = data
    steps, step = 10, 0.01
    curves = {
        "torchattacks.PGD": robust_accuracy("torchattacks.PGD", model, x, y, EPS, steps=steps,
                                            alpha=step, random_start=False),
        "foolbox.LinfPGD": robust_accuracy("foolbox.LinfPGD", model, x, y, EPS, steps=steps,
                                           abs_stepsize=step, random_start=False),
        "art.ProjectedGradientDescent": robust_accuracy(
            "art.ProjectedGradientDescent", model, x, y, EPS, max_iter=steps, eps_step=step,
            num_random_init=0),
    }
    reference = curves["torchattacks.PGD"]
    assert reference[0] > reference[-1] + 0.3
    for name, curve in curves.items():
        assert max(abs(a - b) for a, b in zip(curve, reference)) <= 0.01, (name, curves)


@pytest.mark.parametrize("name", ["torchattacks.FGSM", "foolbox.FGSM", "art.FastGradientMethod"])
def test_fgsm_on_a_linear_model_is_the_exact_clipped_worst_case(name):
    """For logits W x + b with two classes, the worst Linf case within the box moves each
    input by eps against y * sign(w1 - w0), then clips: FGSM must find exactly that."""
    d, n = 20, 400
    model = linear_two_logit(d)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, d, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:40] = 1 - y[:40]  # some misclassified inputs too
    w = model.weight[1] - model.weight[0]
    s = (2 * y - 1).float().unsqueeze(1)  # +1 for class 1, -1 for class 0
    epsilons = [0.0, 0.05, 0.1, 0.2, 0.4]
    result = make(name).run(model, x, y, epsilons, bounds=BOUNDS)
    for eps, adv in zip(epsilons, result.adversarials):
        worst = (x - eps * s * w.sign()).clamp(*BOUNDS)
        assert accuracy(model, adv, y) == accuracy(model, worst, y), eps
        assert torch.allclose(adv, worst, atol=1e-6), eps
    assert accuracy(model, result.adversarials[-1], y) < 0.5 * accuracy(model, x, y)
