"""Forward/backward pass counts and the fooling attack's read-out, through a real run.

The counts are checked against hand counts of the library algorithms (torchattacks FGSM:
one forward and one backward per input; PGD with k steps: k and k; foolbox's LinfPGD
with k steps: k and k plus the one forward of its adversarial check; nothing at eps 0),
and the read-out against softmax(logits * T) in closed form. The largest budget spans
the whole data range, where random starts land nearer other inputs than their own.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from robench import api

STEPS = 3
TEMPERATURE = 0.5
SAMPLES = 12

EXPERIMENT = f"""
    [experiment]
    name = "counts"
    seeds = [0]
    device = "cpu"

    [data]
    dataset = "test.blobs"

    [training]
    epochs = 2
    lr = 0.01
    batch_size = 32

    [[models]]
    name = "mlp"
    hidden = [8]

    [defenses]
    none = []

    [[attacks]]
    name = "fgsm"
    attack = "torchattacks.FGSM"
    epsilons = [0.0, 0.1, 0.2]
    samples = {SAMPLES}

    [[attacks]]
    name = "pgd"
    attack = "torchattacks.PGD"
    epsilons = [0.0, 0.01, 1.0]
    samples = {SAMPLES}
    steps = {STEPS}
    alpha = 0.005

    [[attacks]]
    name = "foolbox-pgd"
    attack = "foolbox.LinfPGD"
    epsilons = [0.0, 1.0]
    samples = {SAMPLES}
    steps = {STEPS}

    [[attacks]]
    name = "transfer"
    attack = "torchattacks.FGSM"
    epsilons = [0.1]
    samples = {SAMPLES}
    source = "mlp/none"

    [[attacks]]
    name = "fooling"
    attack = "fooling_images"
    epsilons = [0.1, 0.3]
    noise_samples = 3
    readout_temperature = {TEMPERATURE}

    [report]
    formats = []
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry):
    root = tmp_path_factory.mktemp("counts")
    path = root / "exp.toml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    return api.run(path, out=root / "run", registry=registry, progress=False)


def _rows(run, attack):
    frame = run.results
    return frame[frame["attack"] == attack]


def _expected(rows, per_input_at_positive_eps: float) -> np.ndarray:
    return np.where(rows["epsilon"] > 0, per_input_at_positive_eps, 0.0)


def test_fgsm_spends_one_forward_and_one_backward_per_input_and_eps(run):
    rows = _rows(run, "fgsm")
    assert len(rows) == 3 * SAMPLES
    np.testing.assert_array_equal(rows["forward_passes"], _expected(rows, 1.0))
    np.testing.assert_array_equal(rows["backward_passes"], _expected(rows, 1.0))


def test_pgd_with_k_steps_spends_k_forwards_and_k_backwards(run):
    rows = _rows(run, "pgd")
    np.testing.assert_array_equal(rows["forward_passes"], _expected(rows, STEPS))
    np.testing.assert_array_equal(rows["backward_passes"], _expected(rows, STEPS))


def test_foolbox_pgd_adds_the_forward_of_its_adversarial_check(run):
    rows = _rows(run, "foolbox-pgd")
    np.testing.assert_array_equal(rows["forward_passes"], _expected(rows, STEPS + 1))
    np.testing.assert_array_equal(rows["backward_passes"], _expected(rows, STEPS))


def test_a_transfer_attack_is_counted_on_its_source_model(run):
    rows = _rows(run, "transfer")
    np.testing.assert_array_equal(rows["forward_passes"], np.ones(SAMPLES))
    np.testing.assert_array_equal(rows["backward_passes"], np.ones(SAMPLES))


def test_generated_inputs_have_no_counts_and_other_attacks_no_readout(run):
    fooling = _rows(run, "fooling")
    assert fooling["forward_passes"].isna().all() and fooling["backward_passes"].isna().all()
    others = run.results[run.results["attack"] != "fooling"]
    assert others["readout_confidence"].isna().all() and others["readout_margin"].isna().all()


def test_fooling_readout_is_the_softmax_of_scaled_logits(run):
    """With two classes softmax(z * T) has top-1 sigmoid(T * |d|), d the logit gap, and
    the host's own confidence (T = 1) is sigmoid(|d|): so the read-out follows from the
    host's column in closed form."""
    rows = _rows(run, "fooling")
    assert len(rows) == 2 * 3 * 2  # eps x noise inputs x classes
    confidence = rows["confidence"].to_numpy("float64")
    gap = np.log(confidence / (1 - confidence))
    expected = 1 / (1 + np.exp(-TEMPERATURE * gap))
    np.testing.assert_allclose(rows["readout_confidence"], expected, rtol=1e-4)
    np.testing.assert_allclose(rows["readout_margin"], 2 * expected - 1, rtol=1e-3,
                               atol=1e-5)
    assert not np.allclose(rows["readout_confidence"], confidence)  # T changes it
    unit = next(u for u in run.record.units.values() if u.attack == "fooling")
    assert unit.details["readout_temperature"] == TEMPERATURE
