"""Per-sample forward/backward accounting, checked against hand counts."""

import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

from robench.counting import PassCounter

EPS = 0.1
STEPS = 4


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
