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
        make("l0_weights").run(digits_mlp(), *first_test_digits(2), [0.1],
                               bounds=BOUNDS).adversarials[0]  # computed when read


def test_jsma_records_its_implementation_and_respects_every_gamma():
    model, (x, y) = digits_mlp(), first_test_digits(5)
    targets = (y + 1) % 10
    gammas = [0.03, 0.1, 0.2]
    for implementation, library in (("cleverhans_probs", "robench"),
                                    ("torchattacks", "torchattacks"), ("art", "art")):
        result = make("jsma", implementation=implementation).run(
            model, x, y, gammas, bounds=BOUNDS, targets=targets)
        assert result.library == library
        assert result.details["implementation"] == implementation
        for gamma, adv in zip(gammas, result.adversarials):
            assert (adv != x).flatten(1).float().mean(1).max() <= gamma
        success = [float((model(a).argmax(1) == targets).float().mean())
                   for a in result.adversarials]
        assert success[-1] >= 0.6, (implementation, success)
    with pytest.raises(ValueError, match="targeted"):
        make("jsma").run(model, x, y, gammas, bounds=BOUNDS)


def three_pixel_model() -> nn.Module:
    """Logits ``W x + b`` on 3 features, 3 classes, built so that the probability rule and
    the logit rule of JSMA choose different first pairs (see the test below)."""
    model = nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, 2.0, 2.0], [-2.0, -1.0, 1.0], [0.0, 0.0, 0.0]]))
        model.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    return model.eval()


def test_jsma_pair_choice_on_a_three_pixel_model_matches_the_hand_computation():
    """At x = 0 with target class 0 (the model predicts class 1), by hand:

    p = softmax(0, 1, 0) = (0.2119, 0.5761, 0.2119). For logits W x + b the probability
    Jacobian is dp_k/dx_i = p_k (W_ki - sum_j p_j W_ji), so the target gradient is
    a = p_0 (W_0 - p W) = 0.2119 * ((-1, 2, 2) - (-1.3641, -0.1523, 1.0))
      = (0.0772, 0.4561, 0.2119),
    and the other classes' gradient is -a (probabilities sum to 1). cleverhans' score
    -(a_p + a_q)(b_p + b_q) = (a_p + a_q)^2 is largest for the pair (1, 2): 0.446 against
    0.284 for (0, 1) and 0.084 for (0, 2). Papernot's logit rule (alpha = W_0, beta = W_1 +
    W_2 = (-2, -1, 1)) scores (0, 1) at 1 * 3 = 3, (0, 2) at 1 * 1 = 1 and excludes (1, 2)
    (beta = 0), so it picks (0, 1). One iteration (gamma = 2/3: floor(3 * 2/3 / 2) = 1)
    raises the chosen pair to the upper bound 1.
    """
    model = three_pixel_model()
    x, y, target = torch.zeros(1, 3), torch.tensor([1]), torch.tensor([0])
    p = torch.softmax(torch.tensor([0.0, 1.0, 0.0]), 0)
    w = model.weight.detach()
    a = p[0] * (w[0] - p @ w)  # the closed form above
    pair_scores = {(i, j): float((a[i] + a[j]) ** 2) for i, j in ((0, 1), (0, 2), (1, 2))}
    assert max(pair_scores, key=pair_scores.get) == (1, 2)
    assert torch.allclose(a, torch.tensor([0.0772, 0.4561, 0.2119]), atol=1e-4)

    result = make("jsma").run(model, x, y, [2 / 3], bounds=BOUNDS, targets=target)
    assert result.adversarials[0].tolist() == [[0.0, 1.0, 1.0]]
    logit_rule = make("jsma", implementation="torchattacks").run(
        model, x, y, [2 / 3], bounds=BOUNDS, targets=target)
    assert logit_rule.adversarials[0].tolist() == [[1.0, 1.0, 0.0]]


def test_jsma_sweep_equals_separate_runs_at_each_gamma():
    """The cleverhans rule answers a sweep from one pass: each gamma must equal a run
    capped at that gamma alone."""
    model, (x, y) = digits_mlp(), first_test_digits(6)
    targets = (y + 2) % 10
    gammas = [0.05, 0.1, 0.15]
    sweep = make("jsma", batch_size=4).run(model, x, y, gammas, bounds=BOUNDS, targets=targets)
    for gamma, adv in zip(gammas, sweep.adversarials):
        alone = make("jsma").run(model, x, y, [gamma], bounds=BOUNDS, targets=targets)
        assert torch.equal(alone.adversarials[0], adv), gamma


def two_models_of_one_seed():
    """Two different models (say, two defenses) and the generator the host gives both."""
    torch.manual_seed(5)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    return digits_mlp(), other


def test_pixel_swap_permutation_is_shared_by_every_model_of_one_seed():
    (a, b), (x, y) = two_models_of_one_seed(), first_test_digits(10)
    runs = [make("pixel_swap").run(m, x, y, [0.1, 0.5], bounds=BOUNDS,
                                   generator=torch.Generator().manual_seed(11)) for m in (a, b)]
    assert torch.equal(runs[0].details["permutation"], runs[1].details["permutation"])
    assert torch.equal(runs[0].details["examples"], runs[1].details["examples"])
    other_seed = make("pixel_swap").run(a, x, y, [0.1], bounds=BOUNDS,
                                        generator=torch.Generator().manual_seed(12))
    assert not torch.equal(other_seed.details["permutation"], runs[0].details["permutation"])


def test_fooling_noise_and_targets_are_shared_by_every_model_of_one_seed():
    (a, b), (x, y) = two_models_of_one_seed(), first_test_digits(4)
    for targets in (None, (y + 1) % 10):
        runs = [make("fooling_images", noise_samples=3).run(
            m, x, y, [0.1], bounds=BOUNDS, targets=targets,
            generator=torch.Generator().manual_seed(4)) for m in (a, b)]
        assert torch.equal(runs[0].inputs, runs[1].inputs)
        assert torch.equal(runs[0].targets, runs[1].targets)
        assert not torch.equal(runs[0].adversarials[0], runs[1].adversarials[0])  # models differ


def test_fooling_records_confidence_and_margin_at_the_authors_readout():
    model, (x, y) = digits_mlp(), first_test_digits(4)
    epsilons = [0.0, 0.2]
    result = make("fooling_images", noise_samples=2).run(
        model, x, y, epsilons, bounds=BOUNDS, generator=torch.Generator().manual_seed(0))
    assert result.details["readout_temperature"] == 0.25
    for i, adv in enumerate(result.adversarials):
        with torch.no_grad():
            probs = torch.softmax(0.25 * model(adv), dim=1)  # the authors' read-out
        top2 = probs.sort(dim=1, descending=True).values[:, :2]
        assert torch.allclose(result.details["readout_confidence"][i], top2[:, 0], atol=1e-6)
        assert torch.allclose(result.details["readout_margin"][i], top2[:, 0] - top2[:, 1],
                              atol=1e-6)
        with torch.no_grad():
            t1 = torch.softmax(model(adv), dim=1).amax(1)
        assert (result.details["readout_confidence"][i] < t1 + 1e-6).all()  # flatter
    from robench.errors import ConfigError

    with pytest.raises(ConfigError, match="readout_temperature must be positive"):
        make("fooling_images", readout_temperature=0.0)
