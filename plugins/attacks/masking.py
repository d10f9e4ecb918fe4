"""Gradient-masking probes: signs that a model's robustness is an artefact of its gradients.

The three signs of Athalye et al. (2018) and Carlini et al. (2019, "On evaluating
adversarial robustness", section 5) that a single model answers cheaply:

* ``unbounded_pgd``: PGD whose budget covers the whole input range must reach chance
  (or below); a model that keeps its accuracy there hides its gradients;
* ``black_box_stronger``: a gradient-free attack (Square) beats gradient PGD at the same
  budget;
* ``more_steps_weaker``: PGD with more steps leaves *higher* accuracy than with fewer.

:func:`masking_probe` runs them with the library adapters (torchattacks PGD and
Square) and returns one :class:`Finding` per probe. It is meant for ``robench doctor``
(the host runs it on each trained cell) and works on any model taking inputs in
``bounds``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Finding", "masking_probe"]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One probe: whether it flags masking, a one-line explanation, and its numbers."""

    check: str
    flagged: bool
    detail: str
    values: dict[str, float]


def _accuracy(model, x, y) -> float:
    from robench import attack_runtime as rt

    return float((rt.predict(model, x) == y.to(x.device)).float().mean())


def _attack(name: str, **options: Any):
    from .library import COMPONENTS

    cls = next(c for c in COMPONENTS if c.name == name)
    return cls(cls.Options(**options))


def masking_probe(model, x, y, *, eps: float, bounds: tuple[float, float] = (0.0, 1.0),
                  steps: tuple[int, int] = (10, 100), square_queries: int = 500,
                  tolerance: float = 0.05, seed: int = 0) -> list[Finding]:
    """Run the three gradient-masking probes on ``model`` with inputs ``(x, y)``.

    ``eps`` is the Linf budget of the PGD/Square comparison; ``steps`` the fewer and
    more PGD steps compared (step size ``2.5 * eps / steps``, random start);
    ``tolerance`` the accuracy gap (absolute) a probe must exceed to flag. The unbounded
    probe uses eps = the input range with 50 steps and flags accuracy above chance
    (1 / number of classes) + ``tolerance``. Uses torchattacks, so ``bounds`` must be
    [0, 1].
    """
    import torch

    from robench import attack_runtime as rt

    def gen():
        return torch.Generator().manual_seed(seed)

    def pgd_accuracy(budget: float, n_steps: int) -> float:
        attack = _attack("torchattacks.PGD", steps=n_steps, alpha=2.5 * budget / n_steps,
                         random_start=True)
        adv = attack.run(model, x, y, [budget], bounds=bounds, generator=gen()).adversarials[0]
        return _accuracy(model, adv, y)

    with rt.eval_mode(model):
        clean = _accuracy(model, x, y)
        chance = 1.0 / rt.num_classes(model, x)
        span = float(bounds[1] - bounds[0])
        unbounded = pgd_accuracy(span, 50)
        few, many = (pgd_accuracy(eps, s) for s in steps)
        square = _attack("torchattacks.Square", n_queries=square_queries).run(
            model, x, y, [eps], bounds=bounds, generator=gen()).adversarials[0]
        black_box = _accuracy(model, square, y)
    best_pgd = min(few, many)
    return [
        Finding("unbounded_pgd", unbounded > chance + tolerance,
                f"PGD with eps = the whole input range leaves accuracy {unbounded:.3f} "
                f"(chance {chance:.3f}, clean {clean:.3f})",
                {"accuracy": unbounded, "chance": chance, "clean": clean}),
        Finding("black_box_stronger", black_box < best_pgd - tolerance,
                f"at eps {eps:g}: Square {black_box:.3f} vs PGD {best_pgd:.3f}",
                {"square": black_box, "pgd": best_pgd}),
        Finding("more_steps_weaker", many > few + tolerance,
                f"at eps {eps:g}: PGD-{steps[0]} {few:.3f} vs PGD-{steps[1]} {many:.3f}",
                {f"pgd_{steps[0]}": few, f"pgd_{steps[1]}": many}),
    ]
