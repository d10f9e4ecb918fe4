"""Library adapters: bounds, targets, transfer, seeds, labels and minimal-attack thresholds."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import accuracy, digits_mlp, first_test_digits, make
from torch import nn

BOUNDS = (0.0, 1.0)


class Rescaled(nn.Module):
    """``model`` for inputs in [-1, 1]: maps them back to [0, 1] first."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model((x + 1) / 2)


@pytest.fixture(scope="module")
def data():
    x, y = first_test_digits(64)
    return digits_mlp(), x, y


def test_torchattacks_refuses_other_bounds_and_the_others_take_them(data):
    model, x, y = data
    wide = Rescaled(model).eval()
    with pytest.raises(ValueError, match=r"torchattacks clamps inputs to \[0, 1\]"):
        make("torchattacks.FGSM").run(wide, 2 * x - 1, y, [0.1], bounds=(-1.0, 1.0))
    for name in ("foolbox.FGSM", "art.FastGradientMethod"):
        unit = make(name).run(model, x, y, [0.05], bounds=BOUNDS).adversarials[0]
        scaled = make(name).run(wide, 2 * x - 1, y, [0.1], bounds=(-1.0, 1.0)).adversarials[0]
        assert torch.allclose((scaled + 1) / 2, unit, atol=1e-5), name


def test_inputs_outside_the_bounds_are_refused(data):
    model, x, y = data
    with pytest.raises(ValueError, match="outside the data bounds"):
        make("foolbox.FGSM").run(model, x + 0.5, y, [0.1], bounds=BOUNDS)


@pytest.mark.parametrize("name,options", [
    ("torchattacks.PGD", {"steps": 10, "alpha": 0.05}),
    ("foolbox.LinfPGD", {"steps": 10, "abs_stepsize": 0.05}),
    ("art.ProjectedGradientDescent", {"max_iter": 10, "eps_step": 0.05}),
])
def test_targeted_mode_hits_the_targets(data, name, options):
    model, x, y = data
    targets = (y + 1) % 10
    result = make(name, **options).run(model, x, y, [0.3], bounds=BOUNDS, targets=targets)
    hit = float((model(result.adversarials[0]).argmax(1) == targets).float().mean())
    assert hit > 0.8, hit


def test_targets_are_refused_where_the_library_has_no_targeted_mode(data):
    model, x, y = data
    with pytest.raises(ValueError, match="no targeted mode"):
        make("foolbox.L2DeepFoolAttack").run(model, x, y, [1.0], bounds=BOUNDS, targets=y)
    with pytest.raises(ValueError, match="targeted only"):
        make("art.SaliencyMapMethod").run(model, x, y, [0.1], bounds=BOUNDS)


def test_transfer_crafts_on_the_source_model(data):
    model, x, y = data
    torch.manual_seed(1)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    for name in ("torchattacks.FGSM", "foolbox.FGSM", "art.FastGradientMethod",
                 "foolbox.L2DeepFoolAttack"):
        eps = [1.0] if "DeepFool" in name else [0.1]
        transfer = make(name).run(other, x, y, eps, bounds=BOUNDS, source_model=model)
        direct = make(name).run(model, x, y, eps, bounds=BOUNDS)
        assert torch.equal(transfer.adversarials[0], direct.adversarials[0]), name
        assert transfer.details["crafted_on"] == "source_model"


def test_seeds_fix_random_starts_and_leave_the_global_rng_alone(data):
    model, x, y = data
    attack = make("torchattacks.PGD", steps=3, random_start=True)

    def run(seed):
        return attack.run(model, x, y, [0.1], bounds=BOUNDS,
                          generator=torch.Generator().manual_seed(seed)).adversarials[0]

    state = torch.random.get_rng_state()
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(a, b) and not torch.equal(a, c)
    cheap = [attack.perturb(model, x, y, 0.1, bounds=BOUNDS,
                            generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    assert torch.equal(cheap[0], cheap[1]) and torch.equal(state, torch.random.get_rng_state())
    assert (cheap[0] - x).abs().max() <= 0.1 + 1e-6  # the training path is projected too
    in_a_grid = attack.run(model, x, y, [0.05, 0.1], bounds=BOUNDS,
                           generator=torch.Generator().manual_seed(0)).adversarials[1]
    assert torch.equal(in_a_grid, a)  # an eps's result does not depend on the grid


def test_art_attacks_the_labels_not_the_predictions(data):
    """On misclassified inputs, ART's FGSM must move away from the *label* (as torchattacks
    does); attacking the model's own prediction would give a different input."""
    model, _, _ = data
    _, _, xs, ys = __import__("attack_fixtures").digits()
    wrong = model(xs).argmax(1) != ys
    x, y = xs[wrong][:20], ys[wrong][:20]
    assert len(x) >= 5
    art_adv = make("art.FastGradientMethod").run(model, x, y, [0.1], bounds=BOUNDS).adversarials[0]
    ta_adv = make("torchattacks.FGSM").run(model, x, y, [0.1], bounds=BOUNDS).adversarials[0]
    pred_adv = make("torchattacks.FGSM").run(model, x, model(x).argmax(1), [0.1],
                                             bounds=BOUNDS).adversarials[0]
    assert torch.allclose(art_adv, ta_adv, atol=1e-6)
    assert not torch.allclose(art_adv, pred_adv, atol=1e-6)


def test_minimal_attacks_run_once_and_threshold_at_every_eps(data):
    model, x, y = data
    epsilons = [0.0, 0.25, 0.5, 1.0, 2.0]
    result = make("foolbox.L2DeepFoolAttack").run(model, x, y, epsilons, bounds=BOUNDS)
    dmin = result.details["minimal_distances"]
    assert result.details["minimal"] and torch.isfinite(dmin).float().mean() > 0.9
    for eps, adv in zip(epsilons, result.adversarials):
        dist = (adv - x).flatten(1).norm(dim=1)
        moved = dist > 0
        assert torch.equal(moved, (dmin <= eps) & (dmin > 0))  # 0: misclassified already
        assert (dist[moved] <= eps).all()
        assert (model(adv[moved]).argmax(1) != y[moved]).all()  # only successes are kept
    accs = [accuracy(model, adv, y) for adv in result.adversarials]
    assert accs == sorted(accs, reverse=True) and accs[-1] < 0.2


def test_l0_minimal_attack_is_thresholded_on_the_fraction_of_changed_values(data):
    model, x, y = data
    epsilons = [0.02, 0.05, 0.1]
    result = make("foolbox.L0FMNAttack", steps=30).run(model, x[:16], y[:16], epsilons,
                                                         bounds=BOUNDS)
    for eps, adv in zip(epsilons, result.adversarials):
        assert (adv != x[:16]).flatten(1).float().mean(1).max() <= eps


def test_inputs_are_attacked_in_chunks_of_batch_size(data):
    model, x, y = data
    for name, options in (("torchattacks.PGD", {"steps": 3, "random_start": False}),
                          ("foolbox.L2DeepFoolAttack", {})):
        whole = make(name, batch_size=0, **options).run(model, x, y, [0.1, 1.0], bounds=BOUNDS)
        chunked = make(name, batch_size=7, **options).run(model, x, y, [0.1, 1.0],
                                                           bounds=BOUNDS)
        for a, b in zip(whole.adversarials, chunked.adversarials):
            assert torch.allclose(a, b, atol=1e-6), name
