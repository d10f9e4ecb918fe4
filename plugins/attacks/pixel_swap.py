"""Random pixel swap: the black-box L0 attack of Galloway et al. (2018) (section 6.3.1).

Written by hand: no library has it.
"""

from __future__ import annotations

import dataclasses

from robench import Attack, AttackProperties, AttackResult, ThreatModel

KEPT_EXAMPLES = 8
"""Swapped inputs kept per eps in ``details['examples']`` (the host stores up to the
attack entry's ``examples`` of them for reports)."""


@dataclasses.dataclass(frozen=True)
class PixelSwapOptions:
    """Options of :class:`PixelSwap`."""

    batch_size: int = dataclasses.field(
        default=500, metadata={"help": "inputs per forward pass when evaluating"})

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def swap_order(x_shape: tuple[int, ...], generator) -> tuple:
    """The authors' swap order for inputs of shape ``x_shape`` (``(N, C, H, W)`` or ``(N, D)``).

    Returns ``(idx, src)``: step ``i`` writes position ``idx[i]`` from the original value at
    ``src[i] = idx[d-1-i]``. Positions index the channel-last (HWC) flattening, as the
    authors' code flattens ``(H, W, C)`` images; one permutation is shared by all inputs.
    """
    import math

    import torch

    d = math.prod(x_shape[1:])
    idx = torch.randperm(d, generator=generator)
    return idx, idx.flip(0)


def _to_flat(x):
    """``(N, C, H, W)`` -> channel-last ``(N, H*W*C)``; feature vectors stay as they are."""
    return x.permute(0, 2, 3, 1).reshape(len(x), -1) if x.dim() == 4 else x.reshape(len(x), -1)


def _from_flat(flat, shape):
    if len(shape) == 4:
        n, c, h, w = shape
        return flat.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()
    return flat.reshape(shape)


def swap_steps(eps: float, d: int) -> int:
    """Number of swap steps for budget ``eps`` (fraction of the ``d`` values): after step
    ``i`` the fraction swapped is ``(i + 1) / d``, so ``eps`` maps to ``round(eps * d)``
    steps (capped at ``d``)."""
    return min(d, max(0, round(eps * d)))


class PixelSwap(Attack):
    """Random pixel swap (Galloway et al. 2018, section 6.3.1): black-box, gradient-free.

    The authors' procedure, exactly: flatten each input channel-last (HWC, so R, G and B
    are separate values), draw one random permutation ``idx`` of the ``d`` values from the
    generator (shared by all inputs), and for ``i = 0, 1, ...`` set
    ``X[:, idx[i]] = X_orig[:, idx[d-1-i]]`` cumulatively (values always come from the
    original). Budget eps is the fraction swapped, ``(i + 1) / d`` after step ``i``; the
    authors evaluate whenever ``i % 100 == 0``, i.e. the grid
    ``epsilons = {start = "1/d", step = "100/d", stop = ...}`` (d = 3072 on CIFAR-10).
    Any grid works: eps maps to ``round(eps * d)`` steps.

    One incremental pass answers the whole sweep (the swaps are applied in chunks between
    evaluation points, which equals the step-by-step loop because every step writes a
    different position). The result gives predictions and distances (fraction of values
    that actually changed) per eps rather than every input; ``details['examples']`` keeps
    the first few swapped inputs per eps. The attack ignores the model until evaluation,
    so ``source_model`` plays no role.

    The permutation depends only on the generator, which the host seeds from the attack
    and the seed (never the defense): every model of one seed is swapped in the same
    order, so their curves differ by the models alone (common random numbers).
    """

    name = "pixel_swap"
    library = "robench"
    sweeps_itself = True  # one incremental pass answers the whole sweep
    Options = PixelSwapOptions
    threat_model = ThreatModel.L0
    properties = AttackProperties(starts_from_input=True, deterministic=True,
                                  monotone=False, bounded=True)

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None) -> AttackResult:
        """Accuracy-vs-fraction-swapped in one incremental pass (see the class docstring)."""
        import torch

        from robench import attack_runtime as rt

        if targets is not None:
            raise ValueError("pixel_swap is untargeted")
        flat_orig = _to_flat(x)
        n, d = flat_orig.shape
        idx, src = swap_order(tuple(x.shape), generator)
        idx, src = idx.to(x.device), src.to(x.device)
        order = sorted(range(len(epsilons)), key=lambda j: swap_steps(epsilons[j], d))
        flat = flat_orig.clone()
        preds = torch.empty((len(epsilons), n), dtype=torch.long, device=x.device)
        dists = torch.empty((len(epsilons), n), dtype=torch.float32, device=x.device)
        k = min(KEPT_EXAMPLES, n)
        examples = torch.empty((len(epsilons), k, *x.shape[1:]), dtype=x.dtype)
        done = 0
        with rt.eval_mode(model):
            for j in order:
                steps = swap_steps(epsilons[j], d)
                flat[:, idx[done:steps]] = flat_orig[:, src[done:steps]]
                done = max(done, steps)
                swapped = _from_flat(flat, tuple(x.shape))
                preds[j] = rt.predict(model, swapped, self.options.batch_size)
                dists[j] = (flat != flat_orig).float().mean(dim=1)
                examples[j] = swapped[:k].cpu()
        return self.result(epsilons, predictions=preds, distances=dists,
                           details={"examples": examples, "permutation": idx.cpu(),
                                    "flatten": "channel-last (HWC)"})

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        """The inputs after ``round(eps * d)`` swap steps."""
        flat_orig = _to_flat(x)
        idx, src = swap_order(tuple(x.shape), generator)
        steps = swap_steps(eps, flat_orig.shape[1])
        flat = flat_orig.clone()
        flat[:, idx[:steps].to(x.device)] = flat_orig[:, src[:steps].to(x.device)]
        return _from_flat(flat, tuple(x.shape))
