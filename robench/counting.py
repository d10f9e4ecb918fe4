"""Per-sample accounting of the forward and backward passes an attack spends.

:class:`PassCounter` wraps a model for the duration of one attack call and attributes
every row a forward call receives to one attacked input. The attack base classes tell it
which attacked inputs each call of ``perturb``/``search`` holds (:func:`attacking`, used
by :meth:`robench.Attack._chunked`); that set of inputs is the *scope* of the rows seen
meanwhile, and all the attacked inputs are the scope elsewhere (attacks that sweep
themselves, the base classes' own success checks). The rule:

* a forward batch with exactly as many rows as the scope is a *full pass*: every input
  of the scope gets one forward, whatever the order of the rows (no matching at all);
* a batch of another size (a later stage on the inputs not yet broken, a probe of one
  row) is attributed row by row to the input of the scope it is closest to (Euclidean
  distance on the flattened values), comparing each row both with the input and with
  the last row seen for it (an iterative attack's previous iterate; after a full pass,
  the row at the input's position), so a subset, in any order, keeps its passes even
  when the attack walks it far from where it started in small steps.

Inside a scope the full-pass rule is exact at any budget. Matching stays exact while
each row is closer to its own input, or to that input's previous row, than to every
other input of the scope: a batch that mixes copies of some inputs without others, in
exactly the scope's number of rows, would be miscounted as a full pass.

A backward pass is counted for the rows of a forward when the gradient with respect to
that forward's input reaches it (``loss.backward()`` or ``torch.autograd.grad`` on the
model's input); gradients the attack takes only with respect to parameters are not
input gradients and are not counted.

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

import contextlib
import contextvars
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

MATCH_CHUNK = 4096
"""Attacked inputs compared with a forward batch at a time (bounds the memory of the
distance matrix)."""

HASH_SEED = 0
"""Seed of the random multipliers that hash an input's bits to look it up exactly."""

_SCOPE: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar(
    "robench_pass_scope", default=None)


@contextlib.contextmanager
def attacking(inputs: torch.Tensor) -> Iterator[None]:
    """Within the block, forward rows that any :class:`PassCounter` sees belong to the
    attacked inputs ``inputs`` (rows of the counter's inputs, in any order), the scope
    of the module docstring's rule. Blocks nest; without a counter the block costs
    nothing."""
    token = _SCOPE.set(inputs)
    try:
        yield
    finally:
        _SCOPE.reset(token)


class PassCounter(nn.Module):
    """An ``nn.Module`` that forwards to ``model`` and counts, per row of ``inputs``, the
    forward passes and input-gradient (backward) passes it sees (rule: module docstring).

    ``forward_counts`` and ``backward_counts`` are float arrays of ``len(inputs)`` values
    (floats because identical inputs share their passes); ``reset()`` zeroes them.
    """

    def __init__(self, model: nn.Module, inputs: torch.Tensor):
        super().__init__()
        self.model = model
        self.train(model.training)  # the wrapper's mode is the model's
        flat = inputs.detach().flatten(1).float()
        gen = torch.Generator().manual_seed(HASH_SEED)
        self._multipliers = torch.randint(1, 2**31, (flat.shape[1],), generator=gen,
                                          dtype=torch.long).to(flat.device)
        keys, group = torch.unique(self._hash(flat), return_inverse=True)  # sorted keys
        first = torch.full((len(keys),), len(flat), device=flat.device).scatter_reduce_(
            0, group, torch.arange(len(flat), device=flat.device), "amin")
        unique = flat[first]
        if not bool((unique[group] == flat).all()):  # two inputs share a key: by value
            unique, group = torch.unique(flat, dim=0, return_inverse=True)
            keys = self._hash(unique)
        self._keys, self._key_order = keys.sort()
        self._group = group.cpu()
        self._originals = unique
        self._on_device = {unique.device: unique}  # copies made once per device
        self._last: dict[torch.device, torch.Tensor] = {}  # latest row seen per input
        self._pending: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._group_size = torch.bincount(self._group, minlength=len(unique)).double()
        self._forward = torch.zeros(len(unique), dtype=torch.float64)
        self._backward = torch.zeros(len(unique), dtype=torch.float64)
        self._scope: tuple[torch.Tensor, ...] | None = None  # (inputs, groups, passes)

    def reset(self) -> None:
        """Set every count to zero."""
        self._forward.zero_()
        self._backward.zero_()
        self._last.clear()
        self._pending.clear()

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

    def _hash(self, flat: torch.Tensor) -> torch.Tensor:
        """An integer key of every row's bits (exact arithmetic, wrapping on overflow)."""
        bits = flat.contiguous().view(torch.int32).long()
        return (bits * self._multipliers.to(flat.device)).sum(1)

    def _scope_of(self, scope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unique-input index of every row of ``scope`` (rows of the attacked
        inputs: looked up by value, the closest input for a row that is none of them),
        and the passes per unique input of one full pass of it."""
        if self._scope is not None and self._scope[0] is scope:
            return self._scope[1], self._scope[2]
        flat = scope.detach().flatten(1).float().to(self._keys.device)
        keys = self._hash(flat)
        position = torch.searchsorted(self._keys, keys).clamp(max=len(self._keys) - 1)
        groups = self._key_order[position]
        found = (self._keys[position] == keys) & (self._originals[groups] == flat).all(1)
        if not bool(found.all()):
            groups[~found] = self._nearest(flat[~found], self._originals, None)
        groups = groups.cpu()
        self._scope = (scope, groups, self._passes(groups))
        return groups, self._scope[2]

    def _passes(self, groups: torch.Tensor) -> torch.Tensor:
        """Passes per unique input of a batch whose rows are ``groups``."""
        return torch.bincount(groups, minlength=len(self._originals)).double()

    def _nearest(self, flat: torch.Tensor, originals: torch.Tensor,
                 last: torch.Tensor | None) -> torch.Tensor:
        """Index of the closest row of ``originals`` or ``last`` (compared position by
        position) to every row of ``flat``."""
        best = torch.full((len(flat),), float("inf"), device=flat.device)
        index = torch.zeros(len(flat), dtype=torch.long, device=flat.device)
        for candidates in (originals, last):
            if candidates is None:
                continue
            for start in range(0, len(candidates), MATCH_CHUNK):
                value, arg = torch.cdist(flat, candidates[start:start + MATCH_CHUNK]).min(1)
                better = value < best
                best = torch.where(better, value, best)
                index = torch.where(better, arg + start, index)
        return index

    def _attribute(self, x: torch.Tensor) -> torch.Tensor:
        """Passes per unique input of the forward batch ``x`` (module docstring's rule)."""
        scope = _SCOPE.get()
        if scope is None:
            members, full = self._group, self._group_size
        else:
            members, full = self._scope_of(scope)
        if x.shape[0] == members.shape[0]:  # a full pass of the scope: no matching
            self._pending[x.device] = (members, x.detach())  # its rows become the last
            return full
        flat = x.detach().flatten(1).float()
        originals, last = self._candidates(flat.device)
        if scope is None:
            groups = self._nearest(flat, originals, last)
        else:
            among = members.unique().to(flat.device)
            groups = among[self._nearest(flat, originals[among], last[among])]
        last[groups] = flat
        return self._passes(groups.cpu())

    def _candidates(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The attacked inputs and the last row seen of each, on ``device``."""
        if device not in self._on_device:
            self._on_device[device] = self._originals.to(device)
        originals = self._on_device[device]
        if device not in self._last:
            self._last[device] = originals.clone()
        last = self._last[device]
        if device in self._pending:  # the rows of the latest full pass, copied only now
            groups, rows = self._pending.pop(device)
            last[groups.to(device)] = rows.flatten(1).float()
        return originals, last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Count one forward pass for every row of ``x`` (and, if ``x`` requires a
        gradient, one backward pass per row once it gets one), then run the model."""
        if math.prod(x.shape[1:]) != self._originals.shape[1]:
            raise ValueError(f"PassCounter got inputs of shape {tuple(x.shape)}, not like "
                             f"the attacked inputs ({self._originals.shape[1]} values each)")
        passes = self._attribute(x)
        self._forward += passes
        if x.requires_grad:
            x = x.view_as(x)  # a node of this call alone: its hook fires once per backward
            x.register_hook(self._backward_hook(passes))
        return self.model(x)

    def _backward_hook(self, passes: torch.Tensor):
        def hook(grad: torch.Tensor) -> None:
            self._backward += passes
        return hook


def uncounted(model: nn.Module) -> nn.Module:
    """The model a :class:`PassCounter` wraps (any other model itself), for probes that
    are the harness's own rather than the attack's, such as the number of classes."""
    return model.model if isinstance(model, PassCounter) else model


def total_passes(counters: list[PassCounter]) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward passes per attacked input, summed over ``counters`` (the
    attacked model's and, for a transfer attack, the source model's)."""
    forward = np.sum([c.forward_counts for c in counters], axis=0)
    backward = np.sum([c.backward_counts for c in counters], axis=0)
    return forward, backward
