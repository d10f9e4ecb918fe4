"""Tests of the host's re-check (robench.evaluation): rows.

How ``result_rows`` reads a sweep: the example arrays it keeps, the model passes it
records per eps or for the whole run, when it hands freed memory back, how often it
predicts a thresholded sweep, and the rows of an empty grid. Every expected value is
stated from the test's own construction (passes run by hand, byte counts of the
adversarials), never read from the code's output.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robench import AttackResult, ThreatModel, evaluation
from robench.attack_runtime import LazySweep, ThresholdedSweep
from robench.counting import PassCounter
from robench.evaluation import result_rows

X = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
Y = torch.tensor([0, 1, 0])


class LargerFeature(nn.Module):
    """Logits equal to the two input features; counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.clone()


def rows_of(result, *, model=None, bounds=(0.0, 1.0), examples=0, counters=(),
            batch_size=16):
    """``result_rows`` of ``result`` on X, Y (L-inf, two classes, on the CPU)."""
    return result_rows(model or LargerFeature(), result, X, Y, np.arange(len(X)), None,
                       threat_model=ThreatModel.LINF, bounds=bounds, num_classes=2,
                       batch_size=batch_size, device="cpu", examples=examples,
                       counters=counters)


# ------------------------------------------------------------------ the kept examples

def test_kept_examples_are_copies_of_an_attack_buffer_reused_between_eps():
    """An attack that writes every eps's adversarials into one buffer: on unbounded data
    nothing is clipped, so the host must copy the examples it keeps."""
    buffer = torch.empty_like(X)
    shifts = [0.1, 0.2, 0.3]

    def compute(i):
        return buffer.copy_(X + shifts[i])

    result = AttackResult(epsilons=shifts, adversarials=LazySweep(compute, 3,
                                                                  attacks_on_read=False))
    _, arrays = rows_of(result, bounds=(-np.inf, np.inf), examples=2)
    for i, shift in enumerate(shifts):
        np.testing.assert_allclose(arrays["adversarial"][i], (X[:2] + shift).numpy(),
                                   rtol=1e-6)


def test_a_lazy_sweep_is_read_without_keeping_its_adversarials():
    """The host takes each eps from a lazy sweep: reading the sweep again afterwards
    computes the eps again, because nothing was kept."""
    reads = []

    def compute(i):
        reads.append(i)
        return X.clone()

    sweep = LazySweep(compute, 2, attacks_on_read=False)
    rows, _ = rows_of(AttackResult(epsilons=[0.0, 0.1], adversarials=sweep))
    assert reads == [0, 1] and len(rows) == 6
    sweep[1]
    assert reads == [0, 1, 1]


def test_a_thresholded_sweep_is_predicted_once_with_k_examples():
    """Judged once: the model runs on the clean inputs and on the candidates, one call
    each (a batch holds every input), whatever the number of eps; the examples keep
    the first ``examples`` inputs at every eps."""
    candidates = torch.tensor([[0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    claimed = torch.tensor([0.2, 0.0, 0.15])
    epsilons = [0.0, 0.1, 0.2, 0.3]
    model = LargerFeature()
    result = AttackResult(epsilons=epsilons,
                          adversarials=ThresholdedSweep(X, candidates, claimed, epsilons))
    rows, arrays = rows_of(result, model=model, examples=2)
    assert model.calls == 2
    assert arrays["adversarial"].shape == (4, 2, 2)
    # input 0 takes its candidate (0.2 away) from eps 0.2 on, input 1's candidate is
    # itself, input 2 (predicted 1 when clean) takes its candidate (0.15 away, class 0)
    # from eps 0.2 on
    np.testing.assert_allclose(arrays["adversarial"][1], X[:2].numpy())
    np.testing.assert_allclose(arrays["adversarial"][2], candidates[:2].numpy())
    assert rows["pred_adv"].tolist() == [0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 0]


# --------------------------------------------------------------------- the pass counts

def _passes(counter: PassCounter, forward: int, backward: int) -> None:
    """``forward`` full forward passes over X through ``counter``, the first
    ``backward`` of them followed by an input-gradient pass."""
    for j in range(forward):
        x = X.clone().requires_grad_(j < backward)
        out = counter(x)
        if j < backward:
            out.sum().backward()


def test_a_sweep_that_attacks_on_read_has_its_passes_counted_per_eps():
    """Eps i's computation runs i + 1 forward and i backward passes on every input;
    passes run before the sweep is read do not count at any eps."""
    counter = PassCounter(LargerFeature(), X)
    _passes(counter, 5, 5)

    def compute(i):
        _passes(counter, i + 1, i)
        return X.clone()

    result = AttackResult(epsilons=[0.0, 0.1, 0.2],
                          adversarials=LazySweep(compute, 3, attacks_on_read=True))
    rows, _ = rows_of(result, counters=[counter])
    assert rows["forward_passes"].tolist() == [1.0] * 3 + [2.0] * 3 + [3.0] * 3
    assert rows["backward_passes"].tolist() == [0.0] * 3 + [1.0] * 3 + [2.0] * 3
    assert rows["forward_passes"].dtype == np.float64


def test_a_finished_sweep_carries_its_whole_runs_passes_at_every_eps():
    """Adversarials handed over as a list (or a lazy sweep that only thresholds): the
    passes of the whole run, summed over the counters, at every eps."""
    attacked, source = PassCounter(LargerFeature(), X), PassCounter(LargerFeature(), X)
    _passes(attacked, 3, 2)
    _passes(source, 1, 1)
    for adversarials in ([X.clone(), X.clone()],
                         LazySweep(lambda i: X.clone(), 2, attacks_on_read=False)):
        result = AttackResult(epsilons=[0.0, 0.1], adversarials=adversarials)
        rows, _ = rows_of(result, counters=[attacked, source])
        assert rows["forward_passes"].tolist() == [4.0] * 6
        assert rows["backward_passes"].tolist() == [3.0] * 6


def test_passes_are_nan_without_counters_or_for_generated_inputs():
    """No counters (even for a sweep that attacks on read), or inputs the attack
    generated itself: the passes are unknown."""
    lazy = AttackResult(epsilons=[0.0, 0.1],
                        adversarials=LazySweep(lambda i: X.clone(), 2, attacks_on_read=True))
    rows, _ = rows_of(lazy)
    assert rows["forward_passes"].isna().all() and rows["backward_passes"].isna().all()
    assert len(rows) == 6
    counter = PassCounter(LargerFeature(), X)
    _passes(counter, 2, 1)
    generated = AttackResult(epsilons=[0.0], adversarials=[X[:2].clone()], inputs=X[:2],
                             labels=Y[:2])
    rows, _ = rows_of(generated, counters=[counter])
    assert len(rows) == 2
    assert rows["forward_passes"].isna().all() and rows["backward_passes"].isna().all()


# ------------------------------------------------------------------- trimming the heap

@pytest.mark.parametrize("extra, trimmed_after", [(0, [1, 3, 5]), (1, [2, 5])])
def test_freed_memory_is_handed_back_each_time_the_read_bytes_reach_the_threshold(
        monkeypatch, extra, trimmed_after):
    """Six eps of X (24 bytes each) and a threshold of two eps' bytes (plus ``extra``):
    the host trims after every second eps at exactly two eps' bytes, after every third
    one byte above; the count starts again at zero after a trim."""
    events: list = []
    size = X.nbytes
    assert size == 3 * 2 * 4
    monkeypatch.setattr(evaluation, "TRIM_BYTES", 2 * size + extra)
    monkeypatch.setattr(evaluation, "release_freed_memory", lambda: events.append("trim"))

    def compute(i):
        events.append(i)
        return X.clone()

    result = AttackResult(epsilons=[0.1 * i for i in range(6)],
                          adversarials=LazySweep(compute, 6, attacks_on_read=False))
    rows_of(result)
    expected = []
    for i in range(6):
        expected += [i] + (["trim"] if i in trimmed_after else [])
    assert events == expected


# ------------------------------------------------------------------------ edge cases

def test_an_empty_grid_gives_no_rows_with_every_column_typed():
    result = AttackResult(epsilons=[], adversarials=[])
    rows, arrays = rows_of(result)
    assert len(rows) == 0 and arrays == {}
    assert rows["forward_passes"].dtype == np.float64
    assert rows["backward_passes"].dtype == np.float64
