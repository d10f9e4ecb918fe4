"""foolbox 3 calls behind :class:`robench_plugins.attacks.library.FoolboxAttack`.

Imported only when an attack runs (it imports torch and foolbox).
"""

from __future__ import annotations

import importlib

import foolbox as fb
import torch

_DISTANCES = {"l1": fb.distances.l1, "l2": fb.distances.l2, "linf": fb.distances.linf}


def craft(attack, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None,
          targets: torch.Tensor | None, bounds: tuple[float, float]) -> torch.Tensor:
    """Run the foolbox class of ``attack.entry`` once on ``(x, y)`` within ``bounds``.

    Fixed-epsilon attacks return foolbox's eps-clipped adversarial; minimal attacks
    (``eps=None``) return the raw minimal adversarial, thresholded by the adapter. The
    model wrapper and the attack object are built once per attack instance.
    """
    lo, hi = float(bounds[0]), float(bounds[1])
    fmodel = attack.built(("model", model, lo, hi, x.device),
                          lambda: fb.PyTorchModel(model, bounds=(lo, hi), device=x.device))
    if targets is not None:
        criterion = fb.criteria.TargetedMisclassification(targets.to(x.device))
    else:
        criterion = fb.criteria.Misclassification(y.to(x.device))
    raw, clipped, _ = attack.built(("attack",), lambda: _attack(attack))(
        fmodel, x, criterion, epsilons=eps)
    return raw if eps is None else clipped


def _attack(attack):
    """The foolbox attack object of ``attack.entry`` with the user's options."""
    entry = attack.entry
    cls = getattr(importlib.import_module(entry["module"]), entry["class"])
    kwargs = attack.library_kwargs()
    if entry["norm_option"] == "distance":
        kwargs["distance"] = _DISTANCES[kwargs["distance"]]
    return cls(**kwargs)
