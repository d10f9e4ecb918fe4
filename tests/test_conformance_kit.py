"""The conformance kit (robench.testing) over the CI list of attacks, with tiny budgets,
and on deliberately broken attacks, which it must catch."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from attack_fixtures import digits_mlp, first_test_digits, make

from robench import Attack, AttackProperties, AttackResult, FixedBudgetAttack, ThreatModel
from robench.testing import check_attack

LINF = [0.0, 0.03, 0.1]
L2 = [0.0, 0.3, 1.0]
L0 = [0.0, 0.05, 0.2]

CI_LIST = [
    ("torchattacks.FGSM", {}, LINF),
    ("foolbox.LinfPGD", {"steps": 5, "rel_stepsize": 0.25}, LINF),
    ("art.AutoProjectedGradientDescent", {"max_iter": 5, "nb_random_init": 1,
                                          "rel_eps_step": 0.25}, LINF),
    ("foolbox.L2DeepFoolAttack", {"steps": 20}, L2),
    ("torchattacks.CW", {"steps": 10, "c": 10, "lr": 0.1}, L2),
    ("torchattacks.Square", {"n_queries": 20}, LINF),
    ("pixel_swap", {}, L0),
]
"""The named short list CI runs (tiny budgets); EXTENDED_LIST runs with ``-m slow``."""

EXTENDED_LIST = [
    ("foolbox.FGSM", {}, LINF),
    ("art.FastGradientMethod", {}, LINF),
    ("torchattacks.PGD", {"steps": 5, "alpha": 0.02}, LINF),
    ("art.ProjectedGradientDescent", {"max_iter": 5, "rel_eps_step": 0.25}, LINF),
    ("torchattacks.APGD", {"steps": 5}, LINF),
    ("art.DeepFool", {"max_iter": 20}, L2),
    ("foolbox.L2CarliniWagnerAttack", {"steps": 20, "binary_search_steps": 3}, L2),
    ("art.SquareAttack", {"max_iter": 10}, LINF),
    ("foolbox.L0FMNAttack", {"steps": 20}, L0),
    ("foolbox.L1BrendelBethgeAttack", {"steps": 20}, [0.0, 1.0, 5.0]),
]


@pytest.fixture(scope="module")
def data():
    x, y = first_test_digits(16)
    return digits_mlp(), x, y


def _params(cases, *marks):
    return [pytest.param(*case, id=case[0], marks=marks) for case in cases]


@pytest.mark.parametrize("name,options,epsilons",
                         _params(CI_LIST) + _params(EXTENDED_LIST, pytest.mark.slow))
def test_attack_conforms(data, name, options, epsilons):
    model, x, y = data
    report = check_attack(make(name, **options), model, x, y, epsilons)
    assert report.ok, report.summary()
    passed = {c.name for c in report.checks if c.passed}
    assert {"result", "budget", "eps0", "seed"} <= passed, report.summary()
    assert report.accuracy[-1] < report.accuracy[0], report.summary()  # it does attack


def test_targeted_jsma_on_a_tiny_input_conforms(data):
    model, x, y = data
    targets = (y[:4] + 1) % 10
    for implementation in ("cleverhans_probs", "torchattacks"):
        report = check_attack(make("jsma", implementation=implementation), model, x[:4], y[:4],
                              L0, targets=targets)
        assert report.ok, report.summary()


def test_fooling_images_conform(data):
    model, x, y = data
    report = check_attack(make("fooling_images", noise_samples=3), model, x, y, [0.0, 0.05, 0.2])
    assert report.ok, report.summary()
    assert next(c for c in report.checks if c.name == "budget").passed is None  # unbounded


@dataclasses.dataclass(frozen=True)
class _NoOptions:
    pass


class _Broken(Attack):
    """An FGSM written for this test that breaks one promise, chosen by ``flaw``."""

    name = "broken"
    library = "tests"
    sweeps_itself = True  # written against run() on purpose: the kit must catch its flaws
    Options = _NoOptions
    threat_model = ThreatModel.LINF
    properties = AttackProperties(starts_from_input=True, deterministic=True, monotone=True,
                                  bounded=True)
    flaw = ""

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None):
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), x)
        x = x.detach()
        advs = []
        for eps in epsilons:
            step = grad.sign()
            if self.flaw == "global_rng":  # random tie-breaking from the global RNG
                step = step + 0.01 * torch.rand(x.shape)
            adv = x + (2 * eps if self.flaw == "over_budget" else eps) * step.clamp(-1, 1)
            if self.flaw == "leaves_bounds":
                adv = adv + 0.5 * eps
            else:
                adv = adv.clamp(*bounds)
            if self.flaw == "not_monotone" and eps == max(epsilons):
                adv = x.clone()
            advs.append(adv)
        return AttackResult(epsilons=list(epsilons), adversarials=advs)


@pytest.mark.parametrize("flaw,check", [("over_budget", "budget"), ("leaves_bounds", "bounds"),
                                        ("global_rng", "seed"), ("not_monotone", "monotone")])
def test_kit_catches_broken_attacks(data, flaw, check):
    model, x, y = data
    attack = _Broken()
    attack.flaw = flaw
    report = check_attack(attack, model, x, y, [0.0, 0.1, 0.3])
    assert not report.ok
    assert check in {c.name for c in report.failures}, report.summary()


def test_the_example_plugin_attack_conforms(data, monkeypatch):
    from conftest import REPO

    import robench

    monkeypatch.syspath_prepend(str(REPO / "plugins" / "example-plugin"))
    from robench_example.hooks import GaussianNoise

    model, x, y = data
    attack = GaussianNoise(GaussianNoise.Options(draws=5))
    assert isinstance(attack, robench.FixedBudgetAttack)
    report = check_attack(attack, model, x, y, [0.0, 1.0, 4.0])
    assert report.ok, report.summary()
    passed = {c.name for c in report.checks if c.passed}
    assert {"result", "bounds", "budget", "eps0", "seed", "grid"} <= passed, report.summary()


class _GridDependent(FixedBudgetAttack):
    """A sign-noise attack that (wrongly) keeps a counter across calls, so an eps's
    result depends on the eps run before it."""

    name = "grid_dependent"
    library = "tests"
    Options = _NoOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.calls = 0

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        self.calls += 1
        signs = torch.randint(0, 2, x.shape, generator=generator).float() * 2 - 1
        return x + eps * signs * (1.0 if self.calls % 2 else 0.5)


def test_kit_catches_a_fixed_budget_attack_whose_result_depends_on_the_grid(data):
    model, x, y = data
    report = check_attack(_GridDependent(), model, x, y, [0.0, 0.1, 0.3])
    assert "grid" in {c.name for c in report.failures}, report.summary()
