"""The hand-written attacks of Galloway et al. (2018): pixel swap, fooling images, the L0
weight attack on linear models and the JSMA table glue."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import accuracy, digits_mlp, first_test_digits, linear_two_logit, make
from torch import nn

BOUNDS = (0.0, 1.0)


def naive_pixel_swap(model, x, seed, every):
    """The authors' loop, one step at a time: predictions after step i when i % every == 0."""
    n, c, h, w = x.shape
    d = c * h * w
    idx = torch.randperm(d, generator=torch.Generator().manual_seed(seed))
    orig = x.permute(0, 2, 3, 1).reshape(n, d)
    cur = orig.clone()
    preds, fractions = [], []
    for i in range(d):
        cur[:, idx[i]] = orig[:, idx[d - 1 - i]]
        if i % every == 0:
            image = cur.reshape(n, h, w, c).permute(0, 3, 1, 2)
            with torch.no_grad():
                preds.append(model(image).argmax(1))
            fractions.append((cur != orig).float().mean(1))
    return torch.stack(preds), torch.stack(fractions)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 5)])
def test_pixel_swap_matches_the_naive_per_step_loop(shape):
    torch.manual_seed(0)
    if shape == (1, 8, 8):
        model, (x, y) = digits_mlp(), first_test_digits(50)
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(60, 16), nn.ReLU(), nn.Linear(16, 5)).eval()
        x, y = torch.rand(40, *shape), torch.randint(0, 5, (40,))
    d, every = x[0].numel(), 7
    epsilons = [(i + 1) / d for i in range(0, d, every)]  # the authors' grid, step `every`
    result = make("pixel_swap").run(model, x, y, epsilons, bounds=BOUNDS,
                                    generator=torch.Generator().manual_seed(3))
    preds, fractions = naive_pixel_swap(model, x, seed=3, every=every)
    assert torch.equal(result.predictions, preds)
    assert torch.equal(result.distances, fractions)
    assert (result.distances <= torch.tensor(epsilons).unsqueeze(1) + 1e-9).all()
    assert result.details["examples"].shape == (len(epsilons), min(8, len(x)), *shape)


def test_pixel_swap_answers_any_grid_in_one_pass_and_perturb_agrees():
    model, (x, y) = digits_mlp(), first_test_digits(30)
    full = [0.0, 0.25, 0.5, 1.0]
    shuffled = [0.5, 0.0, 1.0, 0.25]
    a = make("pixel_swap").run(model, x, y, full, bounds=BOUNDS,
                               generator=torch.Generator().manual_seed(1))
    b = make("pixel_swap").run(model, x, y, shuffled, bounds=BOUNDS,
                               generator=torch.Generator().manual_seed(1))
    for i, eps in enumerate(shuffled):
        assert torch.equal(b.predictions[i], a.predictions[full.index(eps)])
    adv = make("pixel_swap").perturb(model, x, y, 0.5, bounds=BOUNDS,
                                     generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(adv).argmax(1), a.predictions[2])
    assert accuracy(model, adv, y) < accuracy(model, x, y)


def test_fooling_single_step_equals_torchattacks_targeted_fgsm():
    import torchattacks

    model, (x, y) = digits_mlp(), first_test_digits(4)
    epsilons = [0.0, 0.05, 0.2]
    result = make("fooling_images", noise_samples=6).run(model, x, y, epsilons, bounds=BOUNDS,
                                                    generator=torch.Generator().manual_seed(0))
    targets = result.targets
    assert result.source == "noise" and (result.labels == -1).all()
    assert targets.tolist() == list(range(10)) * 6
    noise = result.inputs
    assert noise.shape == (60, 1, 8, 8) and 0 <= noise.min() and noise.max() <= 1
    for eps, adv in zip(epsilons, result.adversarials):
        fgsm = torchattacks.FGSM(model, eps=eps)
        fgsm.set_mode_targeted_by_label(quiet=True)
        assert torch.allclose(adv, fgsm(noise, targets), atol=1e-6), eps
    success = [float((model(adv).argmax(1) == targets).float().mean())
               for adv in result.adversarials]
    assert success[2] > success[0]


def test_fooling_iterative_variant_reaches_confident_targets_from_gray_noise():
    model, (x, y) = digits_mlp(), first_test_digits(4)
    result = make("fooling_images", noise_samples=3, steps=50, step_size=0.005, init="gray").run(
        model, x, y, [1.0], bounds=BOUNDS, generator=torch.Generator().manual_seed(0))
    start, adv = result.inputs, result.adversarials[0]
    assert ((start >= 0.5) & (start <= 0.6)).all()
    assert (adv - start).abs().max() <= 50 * 0.005 + 1e-6
    probs = model(adv).softmax(1)
    targets = result.targets
    assert (probs.argmax(1) == targets).float().mean() >= 0.9
    assert probs.max(1).values.mean() > 0.5


def test_fooling_uses_host_targets_one_noise_per_row():
    model, (x, y) = digits_mlp(), first_test_digits(8)
    targets = (y + 3) % 10
    result = make("fooling_images").run(model, x, y, [0.1], bounds=BOUNDS, targets=targets,
                                        generator=torch.Generator().manual_seed(0))
    assert result.inputs.shape == x.shape and "targets" not in result.details


def test_l0_weight_attack_sets_the_extreme_weight_positions_to_one():
    d = 64
    model, source = linear_two_logit(d, seed=0), linear_two_logit(d, seed=1)
    x = torch.rand(20, d, generator=torch.Generator().manual_seed(0)) * 0.9
    y = model(x).argmax(1)
    epsilons = [0.0, 2 / d, 10 / d, 11 / d]
    for crafting, kwargs in ((model, {}), (source, {"source_model": source})):
        w = crafting.weight[1] - crafting.weight[0]
        result = make("l0_weights").run(model, x, y, epsilons, bounds=BOUNDS, **kwargs)
        for eps, adv in zip(epsilons, result.adversarials):
            i = int(eps * d / 2 + 1e-9)
            expected = set(w.argsort(descending=True)[:i].tolist()) | \
                set(w.argsort()[:i].tolist())
            changed = (adv != x).any(0).nonzero().flatten().tolist()
            assert set(changed) == expected
            assert (adv[:, changed] == 1.0).all()
            assert (adv != x).float().mean(1).max() <= eps
    with pytest.raises(ValueError, match="binary linear model"):
        make("l0_weights").run(digits_mlp(), *first_test_digits(2), [0.1], bounds=BOUNDS)


def test_jsma_records_its_implementation_and_respects_every_gamma():
    model, (x, y) = digits_mlp(), first_test_digits(5)
    targets = (y + 1) % 10
    gammas = [0.03, 0.1, 0.2]
    for implementation, library in (("torchattacks", "torchattacks"), ("art", "art")):
        result = make("jsma", implementation=implementation).run(
            model, x, y, gammas, bounds=BOUNDS, targets=targets)
        assert result.library == library
        assert result.details["implementation"].startswith(
            {"art": "ART SaliencyMapMethod", "torchattacks": "torchattacks JSMA"}[library])
        for gamma, adv in zip(gammas, result.adversarials):
            assert (adv != x).flatten(1).float().mean(1).max() <= gamma
        success = [float((model(a).argmax(1) == targets).float().mean())
                   for a in result.adversarials]
        assert success[-1] >= 0.6, (implementation, success)
    with pytest.raises(ValueError, match="targeted"):
        make("jsma").run(model, x, y, gammas, bounds=BOUNDS)
