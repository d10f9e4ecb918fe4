"""The module the ``feature_selection`` defense wraps a model in (imports torch)."""

from __future__ import annotations

import torch
from torch import nn


class FeatureMask(nn.Module):
    """``model(x * mask)``: features where ``mask`` is 0 are set to 0 before the model
    sees them, so they cannot change its output and their input gradient is 0. The mask
    (shaped like one input) is a buffer: it moves with the model and is saved with it."""

    def __init__(self, model: nn.Module, mask: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.mask)
