"""torchattacks calls behind :class:`robench_plugins.attacks.library.TorchattacksAttack`.

Imported only when an attack runs; the torchattacks class is imported by its catalogued module.
"""

from __future__ import annotations

import importlib

import torch

from robench import attack_runtime as rt


def craft(attack, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None,
          targets: torch.Tensor | None, seed: int | None) -> torch.Tensor:
    """Run the torchattacks class of ``attack.entry`` once on ``(x, y)``.

    ``eps`` goes to the class's budget argument (``eps`` or ``max_epsilon``); minimal
    attacks have none and get ``eps=None``. Targeted mode uses the given ``targets``.
    Classes with an ``n_classes`` argument (APGD-T, FAB: the classes they target in
    turn) get the model's number of logits, that is the data set's number of classes,
    probed outside the pass counts.
    """
    entry = attack.entry
    cls = getattr(importlib.import_module(entry["module"]), entry["class"])
    kwargs = attack.library_kwargs()
    if entry["eps_param"]:
        kwargs[entry["eps_param"]] = eps
    if entry["seed_param"]:
        kwargs[entry["seed_param"]] = 0 if seed is None else seed
    if entry["n_classes_param"]:
        kwargs[entry["n_classes_param"]] = rt.num_classes(model, x)
    atk = cls(model, **kwargs)
    labels = y
    if targets is not None:
        atk.set_mode_targeted_by_label(quiet=True)
        labels = targets
    return atk(x, labels.to(x.device))
