"""``robench.evaluate``: attack a ``torch.nn.Module`` on tensors from a notebook.

(This module is not named ``evaluate``: importing a submodule of that name would replace
the function ``robench.evaluate`` on the package.)

No experiment file and no training: the module and the tensors become a one-cell
experiment (a dataset component serving the tensors, a model component serving a copy
of the module, ``epochs = 0``) run by the same engine as ``robench run``. So the result
is a :class:`robench.api.Run` with the same tidy per-sample frame, the same metrics and
the same report, and calling it again with the same module, tensors and attacks resumes
instead of recomputing. The cell's key holds a hash of the module's weights and
architecture and of the tensors, so another model or other inputs never reuse stale
results. The user's module itself is never modified (the run works on a copy).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from . import hookimpl
from .components import DataInfo, Dataset, LoadedData, Model

DATASET = "robench.tensors"
MODEL = "robench.module"
DEFAULT_METRICS = ("clean_accuracy", "robust_accuracy", "worst_case")


def tensor_digest(*tensors, module=None) -> str:
    """SHA-256 over the values, dtypes and shapes of ``tensors`` and, when given, over
    ``module``'s architecture (its ``repr``) and state_dict."""
    import torch

    digest = hashlib.sha256()
    named = [(str(i), t) for i, t in enumerate(tensors)]
    if module is not None:
        digest.update(repr(module).encode())
        named += list(module.state_dict().items())
    for name, tensor in named:
        flat = tensor.detach().cpu().contiguous().flatten()
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class _DigestOptions:
    digest: str = ""


def _components(module, x, y, info: DataInfo):
    """Dataset and model classes serving these tensors and this module."""

    class Tensors(Dataset):
        """The tensors given to robench.evaluate (all of them are the test split)."""

        name = DATASET
        Options = _DigestOptions

        def load(self, root):
            return LoadedData(info, x[:0], y[:0], x, y)

    class Module(Model):
        """A copy of the module given to robench.evaluate."""

        name = MODEL
        Options = _DigestOptions

        def build(self, info):
            return copy.deepcopy(module)

    return Tensors, Module


class _Plugin:
    """Registers the dataset and model of one evaluate call."""

    def __init__(self, dataset_cls, model_cls):
        self.dataset_cls, self.model_cls = dataset_cls, model_cls

    @hookimpl
    def robench_register_datasets(self, register):
        """Register the tensors."""
        register(self.dataset_cls)

    @hookimpl
    def robench_register_models(self, register):
        """Register the module."""
        register(self.model_cls)


def _attack_entries(attacks, epsilons) -> list[dict[str, Any]]:
    entries = []
    for attack in attacks:
        entry = {"attack": attack} if isinstance(attack, str) else dict(attack)
        if "epsilons" not in entry:
            if epsilons is None:
                raise ValueError(f"attack {entry.get('attack')!r} has no epsilons: pass "
                                 f"epsilons=... or give the attack its own")
            entry["epsilons"] = list(epsilons)
        if isinstance(entry["epsilons"], (int, float, str)):
            entry["epsilons"] = [entry["epsilons"]]
        entries.append(entry)
    return entries


def evaluate(model, x, y, attacks: Sequence[str | Mapping[str, Any]], epsilons=None, *,
             metrics: Sequence[str] | Mapping[str, Mapping[str, Any]] = DEFAULT_METRICS,
             bounds: tuple[float, float] = (0.0, 1.0), eps_scale: int = 1,
             name: str = "model", seed: int = 0, device: str = "auto",
             out: str | Path | None = None, report: Sequence[str] = (), progress: bool = False,
             registry=None):
    """Attack ``model`` on inputs ``x`` (within ``bounds``) with labels ``y``; return the
    :class:`robench.api.Run` (``.results``, ``.metrics``, ``.report()``).

    ``attacks`` are attack plugin names (``"torchattacks.FGSM"``) or tables written
    exactly like ``[[attacks]]`` entries of an experiment file (``{"attack":
    "torchattacks.PGD", "steps": 40, "name": "pgd", "epsilons": [...]}``); ``epsilons``
    (numbers or fraction strings such as ``"8/255"``) is the sweep of those without their
    own. ``metrics`` are metric names, or a mapping of names to their options.
    ``name`` labels the model in the frame and report; ``eps_scale`` is the data's
    natural budget unit for reports (255 for 8-bit images). ``out`` is the run directory
    (default: a new temporary directory); ``report`` the formats rendered into it
    (``("html", "md")``; none by default).
    """
    import torch

    from .api import run as run_spec
    from .config import parse_experiment
    from .plugins import DEFAULT_PLUGINS, build_registry

    x, y = torch.as_tensor(x).detach().cpu(), torch.as_tensor(y).detach().cpu().long()
    if x.dim() < 2 or len(x) != len(y):
        raise ValueError(f"x must be a batch of inputs and y one label per input; got "
                         f"shapes {tuple(x.shape)} and {tuple(y.shape)}")
    params = next(model.parameters(), None)
    with torch.no_grad():
        probe = model(x[:1].to(params.device if params is not None else "cpu"))
    info = DataInfo(name=DATASET, input_shape=tuple(x.shape[1:]),
                    num_classes=int(probe.shape[1]),
                    bounds=cast("tuple[float, float]", tuple(bounds)),
                    eps_scale=eps_scale)
    digest = tensor_digest(x, y, module=model)
    plugin = _Plugin(*_components(model, x, y, info))
    if registry is None:
        registry = build_registry(plugins=[plugin])
    else:  # the caller's plugins, plus this call's tensors and module
        extra = [p for p in registry.pm.get_plugins()
                 if registry.pm.get_name(p) not in DEFAULT_PLUGINS]
        registry = build_registry(autoload=False, plugins=[*extra, plugin])
    metric_names = list(metrics)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="robench-"))
    raw = {
        "experiment": {"name": "evaluate", "seeds": [seed], "device": device,
                       "output": str(out)},
        "data": {"dataset": DATASET, "digest": tensor_digest(x, y)},
        "training": {"epochs": 0},
        "models": [{"name": name, "model": MODEL, "digest": digest}],
        "attacks": _attack_entries(attacks, epsilons),
        "metrics": {"use": metric_names, **({k: dict(v) for k, v in metrics.items()}
                                            if isinstance(metrics, Mapping) else {})},
        "report": {"formats": list(report)},
    }
    spec = parse_experiment(raw, file="<robench.evaluate>", registry=registry)
    return run_spec(spec, out=out, device=device, progress=progress, report=bool(report),
                    registry=registry)
