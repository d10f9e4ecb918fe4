"""Per-sample forward/backward accounting, checked against hand counts.

Counts of library attacks follow from reading their algorithms: torchattacks FGSM is one
forward and one backward per input, PGD with k steps k and k; foolbox's fixed-epsilon
attacks add one forward per input after their last step (the adversarial check of
``FixedEpsilonAttack.__call__``).
"""

import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

from robench import FixedBudgetAttack
from robench.config import component_spec
from robench.counting import PassCounter, attacking

EPS = 0.1
STEPS = 4
LARGE_EPS = 1.0
"""A budget as large as the data range: a random start lands anywhere in the box, so
nearer other inputs than its own."""
BOUNDS = (0.0, 1.0)


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(10, 6, generator=gen), torch.randint(0, 3, (10,), generator=gen)


def test_fgsm_is_one_forward_and_one_backward_per_input(model, data):
    x, y = data
    counter = PassCounter(model, x)
    torchattacks.FGSM(counter, eps=EPS)(x, y)
    np.testing.assert_array_equal(counter.forward_counts, np.ones(len(x)))
    np.testing.assert_array_equal(counter.backward_counts, np.ones(len(x)))


def test_pgd_with_k_steps_is_k_forwards_and_k_backwards(model, data):
    x, y = data
    counter = PassCounter(model, x)
    torchattacks.PGD(counter, eps=EPS, alpha=EPS / 4, steps=STEPS)(x, y)
    np.testing.assert_array_equal(counter.forward_counts, np.full(len(x), STEPS))
    np.testing.assert_array_equal(counter.backward_counts, np.full(len(x), STEPS))


def test_subsets_and_reordering_are_attributed_to_the_right_inputs(model, data):
    x, y = data
    counter = PassCounter(model, x)
    subset = torch.tensor([7, 2, 5])  # out of order, as an attack's later stage may pass
    torchattacks.FGSM(counter, eps=EPS)(x, y)
    torchattacks.PGD(counter, eps=EPS, alpha=EPS / 4, steps=STEPS)(x[subset], y[subset])
    expected = np.ones(len(x))
    expected[subset.numpy()] += STEPS
    np.testing.assert_array_equal(counter.forward_counts, expected)
    np.testing.assert_array_equal(counter.backward_counts, expected)


def test_a_library_ensemble_that_attacks_only_unbroken_inputs(model, data):
    """torchattacks.MultiAttack runs its second attack only on inputs the first did not
    break, with one forward per attack to check which are broken (hand count)."""
    x, y = data
    adversarial = torchattacks.FGSM(model, eps=EPS)(x, y)
    with torch.no_grad():
        broken = model(adversarial).argmax(1) != y
    assert 0 < int(broken.sum()) < len(x)  # both branches of the hand count occur
    counter = PassCounter(model, x)
    ensemble = torchattacks.MultiAttack([
        torchattacks.FGSM(counter, eps=EPS),
        torchattacks.PGD(counter, eps=EPS, alpha=EPS / 4, steps=STEPS, random_start=False)])
    ensemble(x, y)
    fgsm_and_check = np.full(len(x), 2.0)
    forwards = np.where(broken.numpy(), fgsm_and_check, fgsm_and_check + STEPS + 1)
    backwards = np.where(broken.numpy(), 1.0, 1.0 + STEPS)
    np.testing.assert_array_equal(counter.forward_counts, forwards)
    np.testing.assert_array_equal(counter.backward_counts, backwards)


def test_identical_inputs_share_their_passes(model, data):
    x, y = data
    x = torch.cat([x[:1], x[:1], x[1:3]])  # one image attacked towards two targets
    counter = PassCounter(model, x)
    torchattacks.FGSM(counter, eps=EPS)(x[:3], torch.tensor([0, 1, 2]))
    np.testing.assert_allclose(counter.forward_counts, [1.0, 1.0, 1.0, 0.0])


def test_parameter_gradients_and_no_grad_queries_are_not_backward_passes(model, data):
    x, y = data
    trainable = nn.Linear(6, 3)
    counter = PassCounter(trainable, x)
    nn.functional.cross_entropy(counter(x), y).backward()
    with torch.no_grad():
        counter(x[:4])
    np.testing.assert_array_equal(counter.forward_counts, [2] * 4 + [1] * 6)
    np.testing.assert_array_equal(counter.backward_counts, np.zeros(len(x)))
    counter.reset()
    assert counter.forward_counts.sum() == 0


def test_reusing_one_input_tensor_counts_each_backward_once(model, data):
    x, y = data
    counter = PassCounter(model, x)
    adv = x.clone().requires_grad_(True)
    counter(adv)  # a forward whose graph is never differentiated
    loss = nn.functional.cross_entropy(counter(adv), y)
    torch.autograd.grad(loss, adv)
    np.testing.assert_array_equal(counter.forward_counts, np.full(len(x), 2))
    np.testing.assert_array_equal(counter.backward_counts, np.ones(len(x)))


def test_inputs_of_another_shape_are_an_error(model, data):
    x, _ = data
    counter = PassCounter(model, x)
    with pytest.raises(ValueError, match="6 values each"):
        counter(torch.zeros(2, 5))


def test_an_input_walked_towards_another_stays_its_own():
    """Eight steps of 0.1 take input 0 (at 0) to 0.8, nearer input 1 (at 1) than its own
    start: matched against the previous step, every pass is still input 0's."""
    model = torch.nn.Linear(1, 2)
    x = torch.tensor([[0.0], [1.0]])
    counter = PassCounter(model, x)
    for step in range(1, 9):
        counter(torch.tensor([[0.1 * step]]))
    assert counter.forward_counts.tolist() == [8.0, 0.0]
    counter.reset()  # a new budget starts from the attacked inputs again
    counter(torch.tensor([[0.9]]))
    assert counter.forward_counts.tolist() == [0.0, 1.0]


def _counts_per_eps(attack, counter, x, y, epsilons, **kwargs):
    """Run ``attack`` on ``counter`` and read its sweep one eps at a time, as the host
    does: (forward, backward) counts per eps."""
    result = attack.run(counter, x, y, epsilons, bounds=BOUNDS,
                        generator=torch.Generator().manual_seed(0), **kwargs)
    counts = []
    for i in range(len(epsilons)):
        counter.reset()
        result.adversarials.take(i)
        counts.append((counter.forward_counts, counter.backward_counts))
    return counts


def _library_attack(registry, name, **options):
    return component_spec("attack", name, options).create(registry)


@pytest.mark.parametrize("batch_size", [0, 4])  # one chunk; chunks of 4, 4 and 2
def test_torchattacks_pgd_at_a_budget_as_large_as_the_data_is_exact(model, data, registry,
                                                                    batch_size):
    x, y = data
    counter = PassCounter(model, x)
    attack = _library_attack(registry, "torchattacks.PGD", steps=STEPS, alpha=0.3,
                             batch_size=batch_size)
    (zero_f, zero_b), (f, b) = _counts_per_eps(attack, counter, x, y, [0.0, LARGE_EPS])
    assert zero_f.sum() == zero_b.sum() == 0
    np.testing.assert_array_equal(f, np.full(len(x), STEPS))
    np.testing.assert_array_equal(b, np.full(len(x), STEPS))


def test_torchattacks_fgsm_through_the_sweep_is_one_and_one(model, data, registry):
    x, y = data
    counter = PassCounter(model, x)
    attack = _library_attack(registry, "torchattacks.FGSM")
    for f, b in _counts_per_eps(attack, counter, x, y, [EPS, LARGE_EPS]):
        np.testing.assert_array_equal(f, np.ones(len(x)))
        np.testing.assert_array_equal(b, np.ones(len(x)))


def test_foolbox_pgd_and_fgsm_at_a_large_budget(model, data, registry):
    x, y = data
    counter = PassCounter(model, x)
    pgd = _library_attack(registry, "foolbox.LinfPGD", steps=STEPS, random_start=True)
    ((f, b),) = _counts_per_eps(pgd, counter, x, y, [LARGE_EPS])
    np.testing.assert_array_equal(f, np.full(len(x), STEPS + 1))
    np.testing.assert_array_equal(b, np.full(len(x), STEPS))
    fgsm = _library_attack(registry, "foolbox.FGSM")
    ((f, b),) = _counts_per_eps(fgsm, counter, x, y, [LARGE_EPS])
    np.testing.assert_array_equal(f, np.full(len(x), 2.0))
    np.testing.assert_array_equal(b, np.ones(len(x)))


def _sign_steps(model, x, y, size, steps):
    """``steps`` signed-gradient steps of ``size`` from ``x``: ``steps`` forwards and
    backwards of every row."""
    for _ in range(steps):
        x = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), x)
        x = (x + size * grad.sign()).clamp(*BOUNDS).detach()
    return x


class ReorderingAttack(FixedBudgetAttack):
    """A random start anywhere within eps, then signed-gradient steps, on the rows in a
    random order (restored at the end)."""

    name = "test.reordering"

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        order = torch.randperm(len(x), generator=generator)
        start = x[order] + eps * (2 * torch.rand(x.shape, generator=generator) - 1)
        adv = _sign_steps(model, start.clamp(*bounds), y[order], eps / 2, STEPS)
        return adv[order.argsort()]


class StagedAttack(FixedBudgetAttack):
    """One signed-gradient step on every row, then a second stage on a reordered subset
    only (as AutoAttack's later attacks run on the inputs not yet broken), walking each
    of its rows from its clean input in many small steps along a direction of its own."""

    name = "test.staged"
    subset = torch.tensor([7, 2, 5, 0])
    walk = 40

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        adv = _sign_steps(model, x, y, eps, 1)
        part = x[self.subset]
        direction = nn.functional.normalize(torch.randn(part.shape, generator=generator), dim=1)
        with torch.no_grad():
            for step in range(1, self.walk + 1):
                model(part + step * eps / self.walk * direction)
        return adv


def test_a_reordering_attack_at_a_large_budget_is_exact(model, data):
    x, y = data
    counter = PassCounter(model, x)
    ((f, b),) = _counts_per_eps(ReorderingAttack(), counter, x, y, [LARGE_EPS])
    np.testing.assert_array_equal(f, np.full(len(x), STEPS))
    np.testing.assert_array_equal(b, np.full(len(x), STEPS))


def test_a_subset_walked_further_than_the_spacing_of_the_inputs_keeps_its_passes(model, data):
    x, y = data
    spacing = torch.cdist(x, x).masked_fill(torch.eye(len(x), dtype=torch.bool), 9).min()
    eps = 3 * float(spacing)  # every walked row ends nearer another input than its own
    counter = PassCounter(model, x)
    ((f, b),) = _counts_per_eps(StagedAttack(), counter, x, y, [eps])
    expected = np.ones(len(x))
    expected[StagedAttack.subset.numpy()] += StagedAttack.walk
    np.testing.assert_array_equal(f, expected)
    np.testing.assert_array_equal(b, np.ones(len(x)))


def test_within_a_scope_a_full_batch_is_a_pass_of_each_input_in_any_order(model, data):
    x, _ = data
    counter = PassCounter(model, x)
    scope = x[[1, 3, 4]]
    far = torch.rand(3, 6, generator=torch.Generator().manual_seed(5)) * 10
    with attacking(scope):
        counter(far)  # three rows, values unrelated to the inputs: one pass each
        counter(x[[0]])  # one row: the closest input of the scope, never input 0
    forward = counter.forward_counts
    np.testing.assert_array_equal(forward[[0, 2, 5, 6, 7, 8, 9]], 0.0)
    np.testing.assert_array_equal(forward[[1, 3, 4]].sum(), 3 + 1)
    np.testing.assert_array_equal(np.sort(forward[[1, 3, 4]]), [1.0, 1.0, 2.0])
    nearest = int(torch.cdist(x[[0]], scope).argmin())
    assert forward[[1, 3, 4][nearest]] == 2.0


def test_outside_a_scope_a_batch_of_every_input_is_a_full_pass(model, data):
    x, _ = data
    counter = PassCounter(model, x)
    far = torch.rand(len(x), 6, generator=torch.Generator().manual_seed(5)) * 10
    counter(far)
    np.testing.assert_array_equal(counter.forward_counts, np.ones(len(x)))


def test_a_scope_of_identical_inputs_shares_their_full_passes(model, data):
    x, _ = data
    x = torch.cat([x[:1], x[:1], x[1:3]])  # one image attacked towards two targets
    counter = PassCounter(model, x)
    with attacking(x[:3]):
        counter(torch.zeros(3, 6))
    np.testing.assert_allclose(counter.forward_counts, [1.0, 1.0, 1.0, 0.0])


def test_a_scope_row_that_is_no_attacked_input_stands_for_the_closest(model, data):
    x, _ = data
    counter = PassCounter(model, x)
    with attacking(x[[2]] + 1e-3):  # e.g. a copy that went through another dtype
        counter(torch.zeros(1, 6))
    expected = np.zeros(len(x))
    expected[2] = 1
    np.testing.assert_array_equal(counter.forward_counts, expected)


def test_inputs_whose_keys_collide_are_still_told_apart(model, data, monkeypatch):
    """Inputs are grouped and looked up by a hash of their bits; were every key equal,
    the values still decide."""
    monkeypatch.setattr(PassCounter, "_hash",
                        lambda self, flat: torch.zeros(len(flat), dtype=torch.long))
    x, _ = data
    counter = PassCounter(model, x)
    counter(x[[3]])
    with attacking(x[[2, 4]]):
        counter(torch.zeros(2, 6))
    expected = np.zeros(len(x))
    expected[[2, 3, 4]] = 1
    np.testing.assert_array_equal(counter.forward_counts, expected)
