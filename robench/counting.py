"""Per-sample accounting of the forward and backward passes an attack spends.

:class:`PassCounter` wraps a model for the duration of one attack call. Every row a
forward call receives is attributed to the attacked input it is closest to (Euclidean
distance on the flattened values), comparing it both with each attacked input and with
the row last attributed to that input (an iterative attack's previous iterate), so the
counts stay right when an attack reorders the batch, splits it, runs later stages on a
subset (AutoAttack attacks only the inputs that earlier attacks did not break), or walks
an input far from where it started in small steps. A backward pass is counted for a row when the
gradient with respect to that forward's input reaches it (``loss.backward()`` or
``torch.autograd.grad`` on the model's input); gradients the attack takes only with
respect to parameters are not input gradients and are not counted.

Identical attacked inputs (the same image attacked towards several targets) cannot be
told apart by their values: their passes are shared evenly between them.

Usage::

    counter = PassCounter(model, x)
    result = attack.run(counter, x, y, epsilons, bounds=bounds)
    counter.forward_counts, counter.backward_counts   # one value per row of x

Only the attack sees the wrapper; the host's own re-check of the outputs uses the bare
model, so it is counted apart (not at all).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

MATCH_CHUNK = 4096
"""Attacked inputs compared with a forward batch at a time (bounds the memory of the
distance matrix)."""


class PassCounter(nn.Module):
    """An ``nn.Module`` that forwards to ``model`` and counts, per row of ``inputs``, the
    forward passes and input-gradient (backward) passes it sees.

    ``forward_counts`` and ``backward_counts`` are float arrays of ``len(inputs)`` values
    (floats because identical inputs share their passes); ``reset()`` zeroes them.
    """

    def __init__(self, model: nn.Module, inputs: torch.Tensor):
        super().__init__()
        self.model = model
        self.train(model.training)  # the wrapper's mode is the model's
        flat = inputs.detach().flatten(1).float()
        unique, group = torch.unique(flat, dim=0, return_inverse=True)
        self._group = group.cpu()
        self._originals = unique
        self._on_device = {unique.device: unique}  # copies made once per device
        self._last: dict[torch.device, torch.Tensor] = {}  # latest row seen per input
        self._group_size = torch.bincount(self._group, minlength=len(unique)).double()
        self._forward = torch.zeros(len(unique), dtype=torch.float64)
        self._backward = torch.zeros(len(unique), dtype=torch.float64)

    def reset(self) -> None:
        """Set every count to zero."""
        self._forward.zero_()
        self._backward.zero_()
        self._last.clear()

    @property
    def forward_counts(self) -> np.ndarray:
        """Forward passes per attacked input."""
        return self._per_input(self._forward)

    @property
    def backward_counts(self) -> np.ndarray:
        """Input-gradient (backward) passes per attacked input."""
        return self._per_input(self._backward)

    def _per_input(self, per_group: torch.Tensor) -> np.ndarray:
        return (per_group / self._group_size)[self._group].numpy()

    @torch.no_grad()
    def _match(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the closest attacked input (unique group) of every row of ``x``."""
        flat = x.detach().flatten(1).float()
        if flat.device not in self._on_device:
            self._on_device[flat.device] = self._originals.to(flat.device)
        originals = self._on_device[flat.device]
        last = self._last.setdefault(flat.device, originals.clone())
        best = torch.full((len(flat),), float("inf"), device=flat.device)
        index = torch.zeros(len(flat), dtype=torch.long, device=flat.device)
        for candidates in (originals, last):
            for start in range(0, len(candidates), MATCH_CHUNK):
                dist = torch.cdist(flat, candidates[start:start + MATCH_CHUNK])
                value, arg = dist.min(1)
                better = value < best
                best = torch.where(better, value, best)
                index = torch.where(better, arg + start, index)
        last[index] = flat
        return index.cpu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Count one forward pass for every row of ``x`` (and, if ``x`` requires a
        gradient, one backward pass per row once it gets one), then run the model."""
        if math.prod(x.shape[1:]) != self._originals.shape[1]:
            raise ValueError(f"PassCounter got inputs of shape {tuple(x.shape)}, not like "
                             f"the attacked inputs ({self._originals.shape[1]} values each)")
        groups = self._match(x)
        self._forward.index_add_(0, groups, torch.ones(len(groups), dtype=torch.float64))
        if x.requires_grad:
            x = x.view_as(x)  # a node of this call alone: its hook fires once per backward
            x.register_hook(self._backward_hook(groups))
        return self.model(x)

    def _backward_hook(self, groups: torch.Tensor):
        def hook(grad):
            self._backward.index_add_(0, groups, torch.ones(len(groups), dtype=torch.float64))
        return hook


def total_passes(counters: list[PassCounter]) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward passes per attacked input, summed over ``counters`` (the
    attacked model's and, for a transfer attack, the source model's)."""
    forward = np.sum([c.forward_counts for c in counters], axis=0)
    backward = np.sum([c.backward_counts for c in counters], axis=0)
    return forward, backward
