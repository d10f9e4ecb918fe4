"""Tensor helpers of the attack base classes (:mod:`robench.components`) and the built-in
attacks. This module imports torch: import it inside methods only.

Distances are the host's own (:func:`robench.evaluation.distances`): linf/l2/l1 norms of
the flattened difference; l0 is the *fraction* of input values (all channels) changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

SEED_RANGE = 2**31 - 1
"""Seeds are drawn in [0, SEED_RANGE): valid for torch, numpy and ``random`` alike."""


def distance(x: torch.Tensor, adv: torch.Tensor, threat_model: str) -> torch.Tensor:
    """Per-sample distance between ``x`` and ``adv`` under ``threat_model`` (shape ``(N,)``),
    measured exactly as the host re-checks it (:func:`robench.evaluation.distances`)."""
    from .components import ThreatModel
    from .evaluation import distances

    return distances(adv - x, ThreatModel(threat_model))


def project(x: torch.Tensor, adv: torch.Tensor, eps: float, threat_model: str,
            bounds: tuple[float, float]) -> torch.Tensor:
    """Project ``adv`` onto the eps-ball around ``x`` (clip for linf, rescale the
    perturbation for l2/l1, as foolbox's ``clip_perturbation`` does), then onto the
    data bounds. The ball and the box are convex and contain ``x``, so the result lies
    in both. L0 and unbounded perturbations are only clipped to the bounds."""
    delta = adv - x
    if threat_model == "linf":
        delta = delta.clamp(-eps, eps)
    elif threat_model in ("l2", "l1"):
        norms = distance(x, adv, threat_model)
        factor = torch.clamp(eps / norms.clamp_min(1e-12), max=1.0)
        delta = delta * factor.view(-1, *([1] * (x.dim() - 1)))
    return (x + delta).clamp(bounds[0], bounds[1])


class LazySweep(Sequence):
    """The adversarials of a sweep, each eps computed when it is first read.

    ``compute(i)`` returns the adversarials of eps ``i``. Indexing computes an eps once
    and keeps it (the sequence then behaves like a list); the host reads with
    :meth:`take` instead, which keeps nothing, so a sweep over many budgets never holds
    more than one copy of the inputs. ``attacks_on_read`` says whether ``compute`` runs
    the attack (the host then counts each eps's model passes apart) or only thresholds
    a finished search.
    """

    def __init__(self, compute: Callable[[int], torch.Tensor], length: int, *,
                 attacks_on_read: bool):
        self._compute, self._length = compute, length
        self._kept: dict[int, torch.Tensor] = {}
        self.attacks_on_read = attacks_on_read

    def __len__(self) -> int:
        return self._length

    def _index(self, i: int) -> int:
        if not -self._length <= i < self._length:
            raise IndexError(f"eps index {i} out of range for a sweep of {self._length}")
        return i % self._length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._length))]
        i = self._index(i)
        if i not in self._kept:
            self._kept[i] = self._compute(i)
        return self._kept[i]

    def take(self, i: int) -> torch.Tensor:
        """The adversarials of eps ``i``, computed now (or handed over if already read)
        and not kept."""
        i = self._index(i)
        return self._kept.pop(i) if i in self._kept else self._compute(i)


class ThresholdedSweep(LazySweep):
    """The adversarials of a minimal attack: at eps ``i``, each input's ``candidate``
    where its ``distances`` entry is <= ``epsilons[i]``, else the input itself.

    Read like any :class:`LazySweep`; the host instead reads :attr:`candidates` and
    :meth:`chosen` to measure and predict every candidate once rather than once per
    eps (it measures the distances itself; the ones given here only choose).
    """

    def __init__(self, inputs: torch.Tensor, candidates: torch.Tensor,
                 distances: torch.Tensor, epsilons: Sequence[float]):
        self.inputs, self.candidates, self.distances = inputs, candidates, distances
        self.epsilons = [float(eps) for eps in epsilons]
        super().__init__(self._select, len(self.epsilons), attacks_on_read=False)

    def chosen(self, i: int) -> torch.Tensor:
        """Whether each input takes its candidate at eps ``i`` (a bool per input)."""
        return self.distances <= self.epsilons[self._index(i)]

    def _select(self, i: int) -> torch.Tensor:
        shape = (-1, *([1] * (self.inputs.dim() - 1)))
        return torch.where(self.chosen(i).view(shape), self.candidates, self.inputs)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_freed_memory() -> None:
    """Hand memory freed by the C allocator back to the system (glibc's ``malloc_trim``;
    nothing elsewhere). Between the epsilons of a sweep, glibc would otherwise keep the
    freed copies of the inputs in its heap and the peak memory would grow with the grid."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Class predictions of ``model`` on ``x`` without gradients, on ``x``'s device: the
    host's own (:func:`robench.evaluation.predictions`), so an attack judges success
    exactly as the host records it."""
    from .evaluation import predictions

    return predictions(model, x, batch_size, x.device)


def succeeded(model: nn.Module, adv: torch.Tensor, y: torch.Tensor,
              targets: torch.Tensor | None) -> torch.Tensor:
    """Whether each ``adv`` fools ``model``: prediction != label, or == target when targeted."""
    pred = predict(model, adv)
    return pred == targets.to(pred.device) if targets is not None else pred != y.to(pred.device)


def draw_seed(generator: torch.Generator | None) -> int | None:
    """A seed drawn from ``generator`` (``None`` when no generator is given)."""
    if generator is None:
        return None
    return int(torch.randint(0, SEED_RANGE, (1,), generator=generator).item())


def chunk_seed(seed: int | None, chunk: int) -> int | None:
    """The seed of chunk ``chunk`` of a call seeded with ``seed`` (``None`` stays ``None``).

    Chunks are cut the same way for every model, so two models attacked with the same
    ``seed`` see the same randomness chunk by chunk (common random numbers)."""
    return None if seed is None else (seed + chunk) % SEED_RANGE


def chunks(n: int, size: int) -> list[slice]:
    """Slices cutting ``n`` inputs into consecutive chunks of ``size`` (0: one chunk)."""
    size = size if size > 0 else max(n, 1)
    return [slice(start, start + size) for start in range(0, n, size)]


def generator_for(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed`` (``None`` for an unseeded call)."""
    return None if seed is None else torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run the block with torch (the CPU generator and, for a CUDA ``device``, that
    device's), numpy and ``random`` seeded by ``seed``, then restore every one of those
    states, so the caller's random streams are untouched. ``None`` leaves the global
    RNGs as they are (unseeded run). The generators are seeded and saved directly
    (``torch.manual_seed`` would also seed every other device, at many times the cost)."""
    if seed is None:
        yield
        return
    generators = [torch.default_generator]
    if device is not None and device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        generators.append(torch.cuda.default_generators[index])
    torch_states = [g.get_state() for g in generators]
    np_state, py_state = np.random.get_state(), random.getstate()
    for g in generators:
        g.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        for g, state in zip(generators, torch_states):
            g.set_state(state)
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextlib.contextmanager
def eval_mode(*models: nn.Module | None) -> Iterator[None]:
    """Put ``models`` in eval mode for the block and restore their previous modes."""
    modes = [(m, m.training) for m in models if m is not None]
    for m, _ in modes:
        m.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.train(training)


def num_classes(model: nn.Module, x: torch.Tensor) -> int:
    """Number of logits ``model`` returns for one input: a probe of the harness's own,
    run on the model a pass counter wraps, so it is never counted as the attack's."""
    from .counting import uncounted

    with torch.no_grad():
        return int(uncounted(model)(x[:1]).shape[1])
