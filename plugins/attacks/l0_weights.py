"""The L0 weight attack on linear models of Galloway et al. (2018) (section 4.2, Figure 7a).

Written by hand: no library has it.
"""

from __future__ import annotations

import dataclasses

from robench import AttackProperties, FixedBudgetAttack, ThreatModel


@dataclasses.dataclass(frozen=True)
class L0WeightsOptions:
    """Options of :class:`L0Weights` (none: the attack is fully determined by the weights)."""


def weight_direction(model):
    """The input weight vector of a linear binary classifier, as a flat tensor.

    Uses the first ``nn.Linear`` of ``model``: one output gives its weight row; two
    outputs give ``w[1] - w[0]`` (the logit difference of class 1 over class 0).
    """
    from torch import nn

    linear = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    if linear is None:
        raise ValueError("l0_weights needs a linear model: no nn.Linear found")
    w = linear.weight.detach()
    if w.shape[0] == 1:
        return w[0]
    if w.shape[0] == 2:
        return w[1] - w[0]
    raise ValueError(f"l0_weights needs a binary linear model (1 or 2 outputs), but the first "
                     f"nn.Linear has {w.shape[0]} outputs")


def attacked_positions(w, pixels: int):
    """The ``pixels`` largest- and ``pixels`` smallest-weight positions of ``w`` (flat
    indices; a stable sort breaks ties by position; capped so the two sets never overlap)."""
    import torch

    pixels = min(pixels, len(w) // 2)
    order = torch.sort(w, descending=True, stable=True).indices
    return torch.cat([order[:pixels], order[len(order) - pixels:]])


class L0Weights(FixedBudgetAttack):
    """Set the inputs at the i largest- and i smallest-weight positions to the upper bound.

    Galloway, Tanay & Taylor (2018)'s L0 attack on linear models (section 4.2, Figure 7a):
    take the weights of a linear binary classifier (the first ``nn.Linear``; see
    :func:`weight_direction`), and set the input values at the ``i`` most positive and the
    ``i`` most negative weight positions to the data's upper bound (1 for images). Budget
    eps is the fraction of input values, so ``i = floor(eps * d / 2)`` (at most ``2i``
    values change); ``epsilons = {start = "2/784", step = "2/784", ...}`` gives i = 1, 2,
    ... on MNIST. The paper calls it black-box: the positions come from another model's
    weights, so pass that model as ``source_model`` (an ``[[attacks]]`` ``source``) and the
    same pixels are set on every attacked model. Without a source, the attacked model's own
    weights are used (white-box).
    """

    name = "l0_weights"
    library = "robench"
    Options = L0WeightsOptions
    threat_model = ThreatModel.L0
    properties = AttackProperties(starts_from_input=True, deterministic=True,
                                  monotone=False, bounded=True)

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        """Inputs with the weight-ranked positions of ``model`` (the crafting model) set to
        the upper bound, for budget ``eps``."""
        import math

        hi = float(bounds[1])
        if not math.isfinite(hi):
            raise ValueError(f"l0_weights sets values to the upper bound, which must be finite; "
                             f"got {tuple(bounds)}")
        w = weight_direction(model)
        d = math.prod(x.shape[1:])
        if len(w) != d:
            raise ValueError(f"the linear layer reads {len(w)} values but inputs have {d}")
        pos = attacked_positions(w, math.floor(float(eps) * d / 2 + 1e-9)).to(x.device)
        flat = x.reshape(len(x), -1).clone()
        flat[:, pos] = hi
        return flat.reshape(x.shape)
