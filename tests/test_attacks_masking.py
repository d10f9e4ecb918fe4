"""Gradient-masking probes: a canary that masks gradients is flagged, a clean model is not."""

from __future__ import annotations

import torch
from attack_fixtures import digits_mlp, first_test_digits
from torch import nn

from robench_plugins.attacks.masking import masking_probe


class Quantized(nn.Module):
    """Canary defense: rounds inputs to 4 levels first, so input gradients are zero
    almost everywhere while the model stays accurate (masking, not robustness)."""

    def __init__(self, model: nn.Module, levels: int = 4):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * (self.levels - 1)) / (self.levels - 1))


def test_canary_is_flagged_and_the_clean_model_is_not():
    model, (x, y) = digits_mlp(), first_test_digits(100)
    clean = masking_probe(model, x, y, eps=0.1, steps=(10, 50), square_queries=200)
    canary = masking_probe(Quantized(model).eval(), x, y, eps=0.1, steps=(10, 50),
                           square_queries=200)
    assert not any(f.flagged for f in clean), clean
    flagged = {f.check for f in canary if f.flagged}
    assert {"unbounded_pgd", "black_box_stronger"} <= flagged, canary
    by_check = {f.check: f for f in canary}
    assert by_check["black_box_stronger"].values["pgd"] > 0.8  # PGD sees no gradient
