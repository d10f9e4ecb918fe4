"""JSMA as Galloway, Tanay & Taylor (2018), Adversarial Training Versus Weight Decay,
evaluated it (Table 2), next to torchattacks' implementation of Papernot et al.'s rule.

Two implementations, each labelled for what it is (``details["implementation"]``):

* ``cleverhans_probs`` (the default, the authors' evaluation): cleverhans' symbolic JSMA
  (``jsma_symbolic`` of cleverhans 2), re-implemented here in torch. It differentiates
  the *softmax probabilities*, increases features (theta = 1), picks at each iteration
  the pair of features maximising ``-(a_p + a_q)(b_p + b_q)`` among pairs with
  ``a_p + a_q > 0`` and ``b_p + b_q < 0`` (``a``: gradient of the target probability,
  ``b``: summed gradient of the other classes' probabilities), and runs at most
  ``floor(d * gamma / 2)`` iterations. Its quirks are kept: features already used are
  pushed out of the pair scores by twice the largest gradient magnitude, and when no
  pair qualifies the all-zero score selects feature 0 twice.
* ``torchattacks``: torchattacks' JSMA (Papernot et al.'s pair rule on the *logit*
  Jacobian, ``ceil(d * gamma / 2)`` pair steps, so it gets gamma rounded down to an even
  number of features).
* ``art``: ART's ``SaliencyMapMethod``, which scores feature pairs with the target-class
  gradient only (not Papernot et al.'s rule); it adds a pair while the changed fraction
  is <= gamma, so it gets ``eps - 2/d``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from robench import Attack, AttackProperties, AttackResult, ThreatModel

IMPLEMENTATIONS = {
    "cleverhans_probs": "cleverhans 2 jsma_symbolic: pair saliency on the softmax-probability "
                        "Jacobian, floor(d * gamma / 2) iterations (the rule of Galloway et al.'s "
                        "evaluation), re-implemented in torch",
    "torchattacks": "torchattacks JSMA: Papernot et al. (2016) pair saliency on the logit "
                    "Jacobian, ceil(d * gamma / 2) pair steps",
    "art": "ART SaliencyMapMethod: scores feature pairs with the target-class gradients only; "
           "not Papernot et al.'s JSMA",
}
"""Implementation name -> description recorded with every result."""

LIBRARY_ADAPTERS = {"torchattacks": "torchattacks.JSMA", "art": "art.SaliencyMapMethod"}
"""Library implementation -> the registered adapter that runs it."""


@dataclasses.dataclass(frozen=True)
class JSMAOptions:
    """Options of :class:`JSMA`."""

    implementation: Literal["cleverhans_probs", "torchattacks", "art"] = dataclasses.field(
        default="cleverhans_probs",
        metadata={"help": "cleverhans_probs: the softmax-probability rule of cleverhans 2 that "
                          "Galloway et al.'s evaluation used; torchattacks: Papernot et al.'s "
                          "logit rule as torchattacks implements it; art: ART's "
                          "SaliencyMapMethod (target gradient only)"})
    theta: float = dataclasses.field(
        default=1.0, metadata={"help": "change applied to each chosen feature (> 0 increases "
                                       "features; the authors used 1)"})
    batch_size: int = dataclasses.field(
        default=32, metadata={"help": "inputs per pass (cleverhans_probs holds a d x d pair "
                                      "score matrix per input)"})

    def __post_init__(self):
        if self.theta == 0:
            raise ValueError("theta must be non-zero")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def cleverhans_iterations(gamma: float, d: int) -> int:
    """cleverhans' iteration cap ``floor(d * gamma / 2)`` (a 1e-9 guard keeps a budget
    written as a fraction, e.g. ``2/784``, on its whole number)."""
    return max(0, math.floor(d * gamma / 2 + 1e-9))


def library_gamma(eps: float, d: int, implementation: str) -> float:
    """The library's ``gamma`` for budget ``eps`` (fraction of the ``d`` features), chosen so
    the library never changes more than ``eps * d`` features.

    torchattacks runs ``ceil(d * gamma / 2)`` pair steps: it gets
    ``2 * floor(eps * d / 2) / d``. ART adds a pair while the used fraction is <= gamma,
    so it can end two features over: it gets ``eps - 2/d``.
    """
    if implementation == "art":
        return eps - 2.0 / d
    return 2 * math.floor(eps * d / 2 + 1e-9) / d


def probability_jacobian(model, x):
    """``(K, N, d)``: the gradient of each class probability with respect to the flat input."""
    import torch

    x = x.detach().requires_grad_(True)
    probs = model(x).softmax(dim=1)
    rows = [torch.autograd.grad(probs[:, k].sum(), x, retain_graph=k < probs.shape[1] - 1)[0]
            for k in range(probs.shape[1])]
    return torch.stack(rows).flatten(2), probs.detach()


def pair_choice(grads_target, grads_other, domain, increase: bool):
    """cleverhans' pair rule: flat indices ``(p1, p2)`` of the best feature pair per input.

    ``grads_target``/``grads_other``/``domain`` are ``(N, d)``; features out of the search
    domain are pushed away by twice the largest gradient magnitude, exactly as cleverhans
    does, and ties go to the first pair (``argmax``).
    """
    import torch

    n, d = grads_target.shape
    coef = (4 * int(increase) - 2) * (domain == 0).to(grads_target.dtype)
    target = grads_target - coef * grads_target.abs().amax(dim=1, keepdim=True)
    other = grads_other + coef * grads_other.abs().amax(dim=1, keepdim=True)
    target_sum = target.unsqueeze(2) + target.unsqueeze(1)
    other_sum = other.unsqueeze(2) + other.unsqueeze(1)
    mask = (target_sum > 0) & (other_sum < 0) if increase else (target_sum < 0) & (other_sum > 0)
    off_diagonal = 1 - torch.eye(d, dtype=grads_target.dtype, device=grads_target.device)
    scores = mask.to(grads_target.dtype) * (-target_sum * other_sum) * off_diagonal
    best = scores.reshape(n, d * d).argmax(dim=1)
    return best % d, torch.div(best, d, rounding_mode="floor")


def cleverhans_jsma(model, x, targets, *, theta: float, bounds: tuple[float, float],
                    iterations: list[int]):
    """cleverhans 2's symbolic JSMA on ``x`` towards ``targets``, snapshotted after each
    number of ``iterations`` (a run capped at ``k`` iterations ends where this one stands
    after ``k``: the search never looks at its cap). Returns one tensor per entry."""
    import torch

    lo, hi = float(bounds[0]), float(bounds[1])
    shape, n = x.shape, len(x)
    increase = theta > 0
    current = x.reshape(n, -1).clone()
    domain = (current < hi) if increase else (current > lo)
    domain = domain.to(x.dtype)
    targets = targets.to(x.device)
    snapshots: dict[int, torch.Tensor] = {0: current.clone()}
    last = max(iterations, default=0)
    for i in range(last):
        grads, probs = probability_jacobian(model, current.reshape(shape))
        is_target = torch.nn.functional.one_hot(targets, grads.shape[0]).T.to(x.dtype)
        grads_target = (grads * is_target.unsqueeze(2)).sum(dim=0)
        grads_other = (grads * (1 - is_target).unsqueeze(2)).sum(dim=0)
        p1, p2 = pair_choice(grads_target, grads_other, domain, increase)
        cond = (probs.argmax(dim=1) != targets) & (domain.sum(dim=1) >= 2)
        if not bool(cond.any()):
            break
        d = current.shape[1]
        to_mod = (torch.nn.functional.one_hot(p1, d) + torch.nn.functional.one_hot(p2, d))
        to_mod = to_mod.to(x.dtype) * cond.to(x.dtype).unsqueeze(1)
        domain = domain - to_mod
        moved = current + to_mod * theta
        current = moved.clamp(max=hi) if increase else moved.clamp(min=lo)
        snapshots[i + 1] = current.clone()
    done = max(snapshots)
    return [snapshots[min(k, done)].reshape(shape) for k in iterations]


class JSMA(Attack):
    """Targeted JSMA at every gamma of a sweep (Galloway et al. 2018, Table 2).

    eps is gamma, the maximum fraction of input values changed. Each eps answers as a
    separate run at that gamma would (the table's overall perturbation rate needs the
    failed attempts as they stand at that budget): failed attempts are kept as the attack
    leaves them, never replaced by the clean input. ``implementation`` chooses the rule
    (see the module docstring); ``cleverhans_probs`` answers the whole sweep from one
    pass (snapshots after ``floor(d * gamma / 2)`` iterations), the library
    implementations run the library once per gamma. The rule is recorded in
    ``details["implementation"]`` and ``details["rule"]``. Misclassified inputs are attacked too.

    Galloway et al.'s perturbation rate is the mean over a 10 x N array whose
    source-class row stays 0 (0.9 x the mean over the 9N attempts): a metric over the
    ``distance`` column, not part of the attack.
    """

    name = "jsma"
    library = "robench"
    sweeps_itself = True  # one pass answers every gamma; failed attempts are kept
    Options = JSMAOptions
    threat_model = ThreatModel.L0
    supports_targets = True
    properties = AttackProperties(starts_from_input=True, deterministic=True,
                                  monotone=False, bounded=True)

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None) -> AttackResult:
        """Adversarials at every gamma (see the class docstring)."""
        import torch

        from robench import attack_runtime as rt

        if targets is None:
            raise ValueError("jsma is targeted: set targets (Table 2 uses every other class)")
        self.check_inputs(x, targets, bounds)
        crafting = source_model if source_model is not None else model
        d = math.prod(x.shape[1:])
        parts = rt.chunks(len(x), self.options.batch_size)
        with rt.eval_mode(crafting):
            if self.options.implementation == "cleverhans_probs":
                limits = [cleverhans_iterations(float(e), d) for e in epsilons]
                per_chunk = [cleverhans_jsma(crafting, x[p], targets[p], theta=self.options.theta,
                                             bounds=bounds, iterations=limits) for p in parts]
                adversarials = [torch.cat([c[j] for c in per_chunk]) if per_chunk else x.clone()
                                for j in range(len(epsilons))]
                library, version = type(self).library, ""
            else:
                adversarials, library, version = self._library(crafting, x, y, epsilons,
                                                               targets, bounds, parts)
        details = {"implementation": self.options.implementation,
                   "rule": IMPLEMENTATIONS[self.options.implementation],
                   "crafted_on": "source_model" if source_model is not None else "model"}
        return self.result(epsilons, adversarials=adversarials, library=library,
                           library_version=version, details=details)

    def _library(self, model, x, y, epsilons, targets, bounds, parts):
        """One library run per gamma, kept as the library leaves it."""
        import torch

        from .library import COMPONENTS

        implementation = self.options.implementation
        adapter_cls = next(c for c in COMPONENTS if c.name == LIBRARY_ADAPTERS[implementation])
        d = math.prod(x.shape[1:])
        adversarials = []
        for eps in epsilons:
            gamma = library_gamma(float(eps), d, implementation)
            if gamma <= 0:
                adversarials.append(x.clone())
                continue
            adapter = adapter_cls(adapter_cls.Options(theta=self.options.theta, gamma=gamma))
            adapter.check_inputs(x, targets, bounds)
            adversarials.append(torch.cat([
                adapter.search(model, x[p], y[p], bounds=bounds, targets=targets[p]).detach()
                for p in parts]) if parts else x.clone())
        return adversarials, adapter_cls.library, adapter_cls.library_version
