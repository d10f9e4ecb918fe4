"""JSMA for Galloway et al.'s Table 2 , over ART's or torchattacks' implementation.

Only the glue is written here (budget mapping, per-gamma runs, provenance); the attack
itself is the library's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from robench import Attack, AttackProperties, AttackResult, ThreatModel

IMPLEMENTATIONS = {
    "art": ("art.SaliencyMapMethod",
            "ART SaliencyMapMethod: scores feature pairs with the target-class gradients "
            "only; not Papernot et al.'s JSMA"),
    "torchattacks": ("torchattacks.JSMA",
                     "torchattacks JSMA: Papernot et al. (2016) pair saliency from the target "
                     "gradient (alpha) and the other classes' gradient (beta)"),
}
"""Implementation name -> (registered adapter, description recorded with every result)."""


@dataclasses.dataclass(frozen=True)
class JSMAOptions:
    """Options of :class:`JSMA`."""

    implementation: Literal["art", "torchattacks"] = dataclasses.field(
        default="torchattacks",
        metadata={"help": "which library's JSMA runs (see docs/protocols.md; "
                          "torchattacks follows Papernot et al.)"})
    theta: float = dataclasses.field(
        default=1.0,
        metadata={"help": "change applied to each chosen feature (Galloway et al.: 1)"})
    batch_size: int = dataclasses.field(
        default=32, metadata={"help": "ART only: inputs per batch"})

    def __post_init__(self):
        if self.theta == 0:
            raise ValueError("theta must be non-zero")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def library_gamma(eps: float, d: int, implementation: str) -> float:
    """The library's ``gamma`` for budget ``eps`` (fraction of the ``d`` features), chosen so
    the library never changes more than ``eps * d`` features.

    ART adds a pair while the used fraction is <= gamma, so it can end two features over:
    it gets ``eps - 2/d``. torchattacks runs ``ceil(d * gamma / 2)`` pair steps: it gets
    ``2 * floor(eps * d / 2) / d``.
    """
    if implementation == "art":
        return eps - 2.0 / d
    return 2 * math.floor(eps * d / 2 + 1e-9) / d


class JSMA(Attack):
    """Targeted JSMA at every gamma of a sweep (Galloway et al. 2018, Table 2).

    eps is gamma, the maximum fraction of input values changed. Each eps is a separate,
    faithful library run (the table's overall perturbation rate needs the failed
    attempts as they stand at that budget), with the library's gamma mapped by
    :func:`library_gamma` so no run exceeds its budget. Which implementation ran is
    recorded in ``details['implementation']`` and as the result's library: docs/protocols.md
    compare with the paper only through torchattacks' (Papernot's) algorithm. For a
    cheaper sweep that runs once and thresholds, use ``art.SaliencyMapMethod`` or
    ``torchattacks.JSMA`` directly. Misclassified inputs are attacked too.
    """

    name = "jsma"
    Options = JSMAOptions
    threat_model = ThreatModel.L0
    supports_targets = True
    properties = AttackProperties(starts_from_input=True, deterministic=True,
                                  monotone=False, bounded=True)

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None) -> AttackResult:
        """One targeted library run per gamma; inputs are kept as the library leaves them."""
        from . import _runtime as rt
        from .library import COMPONENTS

        if targets is None:
            raise ValueError("jsma is targeted: set targets (Table 2 uses every other class)")
        adapter_name, description = IMPLEMENTATIONS[self.options.implementation]
        adapter_cls = next(c for c in COMPONENTS if c.name == adapter_name)
        d = math.prod(x.shape[1:])
        crafting = source_model if source_model is not None else model
        adversarials = []
        seed = rt.draw_seed(generator)
        with rt.eval_mode(crafting):
            for eps in epsilons:
                gamma = library_gamma(float(eps), d, self.options.implementation)
                if gamma <= 0:
                    adversarials.append(x.clone())
                    continue
                opts = {"theta": self.options.theta, "gamma": gamma}
                if self.options.implementation == "art":
                    opts["batch_size"] = self.options.batch_size
                adapter = adapter_cls(adapter_cls.Options(**opts))
                adapter._check_call(x, targets, bounds)
                adversarials.append(
                    adapter._craft_batched(crafting, x, y, None, targets, bounds, seed))
        return AttackResult(epsilons=list(epsilons), adversarials=adversarials,
                            library=adapter_cls.library,
                            library_version=adapter_cls.library_version,
                            details={"implementation": description, "adapter": adapter_name})
