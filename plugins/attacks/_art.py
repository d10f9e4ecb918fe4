"""ART calls behind :class:`robench_plugins.attacks.library.ArtAttack`.

Imported only when an attack runs (it imports torch, numpy and ART).
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import torch
from art.estimators.classification import PyTorchClassifier

from robench import attack_runtime as rt

_PROBABILITY_ATTACKS = {"SimBA"}
"""ART attacks that refuse a model returning logits: they get softmax probabilities."""


class _ArtInput(torch.nn.Module):
    """Casts ART's inputs to ``x``'s dtype (some ART attacks build float64 arrays) and,
    where an attack needs them, turns logits into probabilities."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype, softmax: bool):
        super().__init__()
        self.model, self.dtype, self.softmax = model, dtype, softmax

    def forward(self, x):
        out = self.model(x.to(self.dtype))
        return out.softmax(dim=1) if self.softmax else out


def classifier(model: torch.nn.Module, x: torch.Tensor, bounds: tuple[float, float],
               probabilities: bool = False) -> PyTorchClassifier:
    """``model`` as an ART ``PyTorchClassifier`` for inputs shaped like ``x``."""
    finite = all(math.isfinite(float(b)) for b in bounds)
    return PyTorchClassifier(
        model=_ArtInput(model, x.dtype, probabilities), loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=rt.num_classes(model, x),
        clip_values=(float(bounds[0]), float(bounds[1])) if finite else None,
        device_type="gpu" if x.is_cuda else "cpu")


def craft(attack, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None,
          targets: torch.Tensor | None, bounds: tuple[float, float]) -> torch.Tensor:
    """Run the ART class of ``attack.entry`` once; labels (or targets) are always given.
    The ``PyTorchClassifier`` is built once per attack instance (the attack object per
    call: its budget is a constructor argument)."""
    entry = attack.entry
    cls = getattr(importlib.import_module(entry["module"]), entry["class"])
    probabilities = entry["class"] in _PROBABILITY_ATTACKS
    clf = attack.built(("model", model, tuple(x.shape[1:]), x.dtype, x.device,
                        tuple(float(b) for b in bounds), probabilities),
                       lambda: classifier(model, x, bounds, probabilities))
    kwargs = attack.library_kwargs()
    if entry["norm_option"]:
        norm = str(kwargs["norm"])
        kwargs["norm"] = np.inf if norm == "inf" else int(float(norm))
    params = cls.attack_params
    if "targeted" in params:
        kwargs["targeted"] = targets is not None
    if "verbose" in params:
        kwargs["verbose"] = False
    if entry["eps_param"]:
        kwargs[entry["eps_param"]] = eps
        rel = getattr(attack.options, "rel_eps_step", None)
        if rel is not None:
            kwargs["eps_step"] = rel * eps
    art_attack = cls(clf, **kwargs)
    labels = (targets if targets is not None else y).cpu().numpy()
    one_hot = np.eye(clf.nb_classes, dtype=np.float32)[labels]
    try:
        adv = art_attack.generate(x.detach().cpu().numpy(), y=one_hot)
    except ModuleNotFoundError as err:  # e.g. ART's AutoAttack imports `multiprocess`
        raise RuntimeError(f"{attack.name} needs the package {err.name!r}, which ART does "
                           f"not install; install it or use another attack (for AutoAttack: "
                           f"torchattacks.AutoAttack)") from err
    return torch.from_numpy(np.asarray(adv, dtype=np.float32)).to(x.device)
