"""The high-confidence targeted attack of Tanay & Griffin (2016): the temperature
calibration against closed forms, the update rule against the hand-derived gradient of a
linear softmax model, the stopping rule, the bounds, cyclic targets from an experiment
file, and the error paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from attack_fixtures import builtin_registry, make
from conftest import SMOKE
from scipy.special import softmax
from torch import nn

from robench import ConfigError
from robench.config import load_experiment
from robench_plugins.attacks.high_confidence import (
    HighConfidence,
    ascent_step,
    calibrate_temperature,
    target_probability,
)


@pytest.mark.parametrize("k", [2, 3, 10])
def test_calibration_matches_the_closed_form_of_one_hot_logits(k):
    """Logits (a, 0, ..., 0) give a top score e^(a/t) / (e^(a/t) + k - 1), increasing in
    a: the median score is the score of the median a, so t = median(a) / log(c (k-1) /
    (1 - c))."""
    a = np.array([0.5, 3.0, 1.7, 8.0, 2.2])
    logits = np.zeros((len(a), k))
    logits[np.arange(len(a)), np.arange(len(a)) % k] = a  # the top class varies by row
    for c in (0.95, 0.6):
        expected = np.median(a) / math.log(c * (k - 1) / (1 - c))
        assert calibrate_temperature(logits, c) == pytest.approx(expected, rel=1e-9)


def test_calibration_gives_the_requested_median_score_on_random_logits():
    logits = np.random.default_rng(0).normal(0, 4, (101, 10))
    t = calibrate_temperature(logits)
    top = softmax(logits / t, axis=1).max(axis=1)
    assert np.median(top) == pytest.approx(0.95, abs=1e-9)
    assert calibrate_temperature(logits + 7.0) == pytest.approx(t)  # shift invariant


@pytest.mark.parametrize("logits, confidence, words", [
    (np.zeros((3, 4)), 0.95, "no temperature"),
    (np.array([[1.0, 1.0, 0.0]] * 3), 0.95, "no temperature"),  # top scores stay <= 1/2
    (np.eye(4), 0.2, "confidence must be in (1/4, 1)"),
    (np.eye(4), 1.0, "confidence must be in (1/4, 1)"),
    (np.ones(4), 0.95, "logits must be (inputs, classes >= 2)"),
])
def test_calibration_refuses_what_no_temperature_reaches(logits, confidence, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        calibrate_temperature(logits, confidence)


def linear_model(d: int = 6, k: int = 4, seed: int = 0) -> nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, k).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(k, d, generator=gen, dtype=torch.float64))
        model.bias.copy_(torch.randn(k, generator=gen, dtype=torch.float64))
    return model.requires_grad_(False)


def test_one_step_follows_the_closed_form_gradient_of_the_target_probability():
    """For logits W x + b at temperature t: grad p_l = p_l / t (W_l - sum_k p_k W_k)."""
    model, t, step = linear_model(), 1.7, 0.01
    w = model.weight.numpy()
    x = torch.full((3, 6), 0.5, dtype=torch.float64) + 0.1 * torch.arange(3.0)[:, None].double()
    targets = torch.tensor([0, 2, 3])
    got = ascent_step(model, x, targets, temperature=t, step=step, bounds=(0.0, 1.0))
    for i, target in enumerate(targets.tolist()):
        p = softmax((w @ x[i].numpy() + model.bias.numpy()) / t)
        grad = p[target] / t * (w[target] - p @ w)
        expected = x[i].numpy() + step * grad / np.linalg.norm(grad)
        np.testing.assert_allclose(got[i].numpy(), expected, rtol=1e-12)


def test_a_step_is_clipped_to_the_bounds():
    model = linear_model()
    x = torch.full((1, 6), 0.999, dtype=torch.float64)
    target = torch.tensor([1])
    free = ascent_step(model, x, target, temperature=1.0, step=0.5, bounds=(-10.0, 10.0))
    clipped = ascent_step(model, x, target, temperature=1.0, step=0.5, bounds=(0.0, 1.0))
    assert (free > 1).any() and (free < 0.999).any()  # the free step leaves [0, 1]
    np.testing.assert_array_equal(clipped.numpy(), free.clamp(0, 1).numpy())


def test_the_search_stops_at_the_first_step_that_reaches_the_confidence():
    """A hand-written loop of the paper's rule at the recorded temperature gives the same
    candidates, each at the first step with p_target >= 0.95."""
    model = linear_model(d=6, k=4)
    x = torch.rand(12, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = model(x).argmax(1)
    targets = (y + 1) % 4
    attack = make("high_confidence", step=0.02)
    bounds = (-5.0, 5.0)  # room to reach every target
    result = attack.run(model, x, y, [0.0, 100.0], bounds=bounds, targets=targets,
                        generator=torch.Generator().manual_seed(0))
    t = result.details["temperature"]
    median_top = np.median(softmax(model(x).numpy() / t, axis=1).max(axis=1))
    assert median_top == pytest.approx(0.95, abs=1e-9)
    for i in range(len(x)):
        adv, steps = x[i:i + 1], 0
        while target_probability(model, adv, targets[i:i + 1], t) < 0.95:
            adv = ascent_step(model, adv, targets[i:i + 1], temperature=t, step=0.02,
                              bounds=bounds)
            steps += 1
            assert steps <= attack.options.max_steps
        np.testing.assert_allclose(result.adversarials[1][i].numpy(), adv[0].numpy(),
                                   rtol=1e-12)
        distance = float((adv - x[i]).norm())
        assert float(result.details["minimal_distances"][i]) == pytest.approx(distance)
        assert distance <= steps * 0.02 + 1e-12
    assert result.details["reached"] == len(x)
    assert torch.equal(result.adversarials[0], x)  # eps 0: nothing fits


def test_inputs_that_do_not_reach_the_confidence_are_not_found():
    model = linear_model()
    x = torch.full((2, 6), 0.5, dtype=torch.float64)
    y = model(x).argmax(1)
    attack = make("high_confidence", step=1e-4, max_steps=2)
    result = attack.run(model, x, y, [100.0], bounds=(0.0, 1.0), targets=(y + 1) % 4)
    assert result.details["reached"] == 0
    assert torch.isinf(result.details["minimal_distances"]).all()
    assert torch.equal(result.adversarials[0], x)


def test_the_attack_needs_targets_and_valid_options():
    model = linear_model()
    x = torch.full((2, 6), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="targeted attack"):
        make("high_confidence").run(model, x, model(x).argmax(1), [1.0], bounds=(0.0, 1.0))
    for options, words in (({"confidence": 1.0}, "confidence"), ({"step": 0}, "step"),
                           ({"max_steps": 0}, "max_steps")):
        with pytest.raises(ValueError, match=words):
            HighConfidence.Options(**options)


def test_registered_as_a_targeted_l2_attack_with_the_papers_defaults():
    cls = builtin_registry().get("attack", "high_confidence")
    assert cls is HighConfidence and cls.supports_targets
    assert cls.threat_model.value == "l2"
    assert cls.Options().step == pytest.approx(1.0 / 255)  # the paper's 1.0 on 0..255
    assert cls.Options().confidence == 0.95


CYCLIC = SMOKE.replace('''    name = "noise"
    attack = "test.sign_noise"
    epsilons = { start = 0, stop = 0.5, num = 6 }
    repeats = 2''', '''    name = "hc"
    attack = "high_confidence"
    targets = "cyclic"
    step = 0.05
    epsilons = { start = 0, stop = 20, num = 5 }''')


def test_cyclic_targets_are_the_next_class_and_the_temperature_is_recorded(
        write_toml, registry, tmp_path):
    from robench.api import run as run_experiment

    assert CYCLIC != SMOKE
    spec = load_experiment(write_toml(CYCLIC), registry=registry)
    assert spec.attacks[0].targets == "cyclic"
    run = run_experiment(spec, out=tmp_path / "run", progress=False, report=False,
                         registry=registry)
    rows = run.results
    k = int(rows.attrs["num_classes"])
    assert (rows["target"].astype(int) == (rows["label"].astype(int) + 1) % k).all()
    assert rows.groupby("sample")["target"].nunique().eq(1).all()  # one target per input
    temperatures = [u.details["temperature"] for u in run.record.units.values()]
    assert len(temperatures) == 2 and all(t > 0 for t in temperatures)


def test_an_unknown_targets_mode_names_the_valid_ones(write_toml, registry):
    with pytest.raises(ConfigError, match="cyclic"):
        load_experiment(write_toml(CYCLIC.replace('"cyclic"', '"next"')), registry=registry)
