"""Any model, no plugin needed: a factory imported by name, weights from a checkpoint.

``model = "import"`` with ``target = "package.module:factory"`` (or
``"path/to/file.py:factory"``) calls ``factory(**kwargs)``; the returned
``torch.nn.Module`` maps inputs on the data's own scale to logits. ``checkpoint`` loads a
state_dict saved with ``torch.save`` (``.pt``/``.pth``, read with
``weights_only=True``, so no code runs) or a safetensors file (``.safetensors``). The
checkpoint's *content* hash (SHA-256) is an option of the model, filled in from the file
when the experiment is read: replacing the file's content changes the model's cache key
even when its path stays the same.

Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from robench import Model

from ._common import CommonOptions, finish

TARGET_PATTERN = re.compile(r"^(?P<module>[^:]+):(?P<attr>[A-Za-z_][A-Za-z0-9_.]*)$")
"""``module:attribute``, where module is a dotted module name or a ``.py`` file path."""

SAFETENSORS_SUFFIX = ".safetensors"


def checkpoint_digest(path: str | Path) -> str:
    """SHA-256 (hex) of the file's content: the identity of a checkpoint in cache keys."""
    with open(Path(path).expanduser(), "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """The state_dict stored in ``path`` (a ``.safetensors`` file or a ``torch.save``
    file read with ``weights_only=True``).

    A dict that holds the state_dict under ``"state_dict"`` or ``"model_state_dict"`` is
    unwrapped, and a ``"module."`` prefix (DataParallel) is stripped from every key.
    """
    import torch

    path = Path(path).expanduser()
    if path.suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_checkpoint(net, path: str | Path) -> None:
    """Load the checkpoint at ``path`` into ``net`` strictly (a missing or unexpected
    key is an error naming the file)."""
    try:
        net.load_state_dict(load_state_dict(path))
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not fit this model: {err}") from None


def import_target(target: str):
    """The object named by ``module:attribute``; the module is a dotted name on the
    Python path or the path of a ``.py`` file."""
    match = TARGET_PATTERN.match(target)
    if match is None:
        raise ValueError(f"expected 'package.module:factory' or 'file.py:factory', "
                         f"got {target!r}")
    module_name, attr = match["module"], match["attr"]
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"model file {module_name} not found")
        name = f"robench_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise ValueError(f"cannot import {module_name!r} ({err})") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no attribute {attr!r}") from None
    return obj


def check_logits(net, info) -> None:
    """Run ``net`` once on two zero inputs and check it returns ``(2, num_classes)``
    logits, so a wrong model fails before any training or attack."""
    import torch

    was_training = net.training
    net.eval()
    with torch.no_grad():
        out = net(torch.zeros(2, *info.input_shape))
    net.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, info.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model returns {shape} for 2 inputs of shape "
                         f"{tuple(info.input_shape)}; expected logits of shape "
                         f"(2, {info.num_classes}) for dataset {info.name!r}")


@dataclasses.dataclass(frozen=True)
class ImportedOptions(CommonOptions):
    """Options of :class:`ImportedModel`."""

    target: str = dataclasses.field(
        kw_only=True, metadata={"help": "the factory: 'package.module:function' (importable) "
                                      "or 'path/to/file.py:function'; called with kwargs"})
    kwargs: dict = dataclasses.field(
        default_factory=dict, metadata={"help": "keyword arguments of the factory"})
    checkpoint: str = dataclasses.field(
        default="", metadata={"help": "weights to load: a state_dict saved with torch.save "
                                      "(.pt, .pth) or a .safetensors file"})
    checkpoint_sha256: str = dataclasses.field(
        default="", metadata={"help": "SHA-256 of the checkpoint's content, part of the "
                                      "model's cache key; filled in from the file when "
                                      "empty, checked against it when given"})

    def __post_init__(self):
        super().__post_init__()
        if not TARGET_PATTERN.match(self.target):  # imported when the model is built
            raise ValueError(f"target must be 'package.module:factory' or "
                             f"'file.py:factory', got {self.target!r}")
        if not self.checkpoint:
            if self.checkpoint_sha256:
                raise ValueError("checkpoint_sha256 is given without a checkpoint")
            return
        if not Path(self.checkpoint).expanduser().is_file():
            raise ValueError(f"checkpoint {self.checkpoint} not found")
        digest = checkpoint_digest(self.checkpoint)
        if self.checkpoint_sha256 and self.checkpoint_sha256.lower() != digest:
            raise ValueError(f"checkpoint {self.checkpoint} has SHA-256 {digest}, not the "
                             f"expected {self.checkpoint_sha256}")
        object.__setattr__(self, "checkpoint_sha256", digest)


class ImportedModel(Model):
    """A user's own model: a factory imported by name, with optional checkpoint.

    ``factory(**kwargs)`` is imported from ``target`` and loaded from a state_dict
    checkpoint (``.pt`` or ``.safetensors``) when one is given. The factory returns a
    ``torch.nn.Module`` taking inputs on the data's scale (images in [0, 1]) and
    returning logits; ``mean``/``std`` add in-model normalisation in front of it. The
    checkpoint's SHA-256 is part of the cache key, so a new file at the same path is a
    new model. A pre-trained model is evaluated as it is with
    ``training = { epochs = 0 }``; with more epochs the host trains it further.
    """

    name = "import"
    Options = ImportedOptions

    def build(self, info):
        from torch import nn

        factory = import_target(self.options.target)
        if not callable(factory):
            raise ValueError(f"{self.options.target} is not callable")
        net = factory(**self.options.kwargs)
        if not isinstance(net, nn.Module):
            raise ValueError(f"{self.options.target} returned a {type(net).__name__}, "
                             f"not a torch.nn.Module")
        if self.options.checkpoint:
            if checkpoint_digest(self.options.checkpoint) != self.options.checkpoint_sha256:
                raise ValueError(f"checkpoint {self.options.checkpoint} changed since the "
                                 f"experiment was read")
            load_checkpoint(net, self.options.checkpoint)
        model = finish(net, CommonOptions(mean=self.options.mean, std=self.options.std), info)
        check_logits(model, info)
        return model
