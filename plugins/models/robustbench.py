"""RobustBench models from a local model directory, without a network.

RobustBench (Croce et al. (2021), RobustBench: a standardized adversarial robustness
benchmark) stores the weights of its model zoo as
``<model_dir>/<dataset>/<threat_model>/<model_name>.pt`` (ensembles as
``<model_name>.pt_m0.pt``, ``_m1.pt``, ...), downloading them on first use. robench
never downloads: the directory is filled on a machine with a network (by RobustBench's
own ``load_model``) and copied; a missing file is a clear error when the experiment is
read.

The architecture comes from RobustBench's model zoo (``pip install robustbench``) and the
weights are loaded by RobustBench's own ``load_model``, which knows every model's quirks.
robustbench 1.1.1's package ``__init__`` imports ``pkg_resources`` (gone from setuptools
81 on) and a module ``autoattack`` that its dependency ``pyautoattack`` does not provide
(it installs ``pyautoattack``); neither is needed to build a model, so robench imports
``robustbench.utils`` without running that ``__init__``. Alternatively ``architecture``
names a factory (``"package.module:function"``) that builds the bare network, for a model
the installed zoo does not know or where robustbench is not installed; its checkpoint is
then loaded strictly as a state_dict.

RobustBench models take inputs in [0, 1] and normalise inside: robench adds no
normalisation. Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Literal

from robench import Model

from .imported import (
    TARGET_PATTERN,
    check_logits,
    checkpoint_digest,
    import_target,
    load_checkpoint,
)


def checkpoint_files(model_dir: str | Path, dataset: str, threat_model: str,
                     model_name: str) -> list[Path]:
    """The weight files of a model in RobustBench's layout: ``[<name>.pt]``, or the
    members ``<name>.pt_m0.pt``, ``<name>.pt_m1.pt``, ... of an ensemble; empty when
    neither is there."""
    path = Path(model_dir).expanduser() / dataset / threat_model / f"{model_name}.pt"
    if path.is_file():
        return [path]
    members = []
    while (member := Path(f"{path}_m{len(members)}.pt")).is_file():
        members.append(member)
    return members


def robustbench_utils() -> types.ModuleType:
    """``robustbench.utils``, imported without running ``robustbench/__init__.py`` (whose
    imports of ``pkg_resources`` and ``autoattack`` fail on current installs and are not
    needed to load a model)."""
    if "robustbench" not in sys.modules:
        spec = importlib.util.find_spec("robustbench")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError("the RobustBench model zoo needs `pip install robustbench`, or "
                             "give `architecture` (a factory of the bare network)")
        package = types.ModuleType("robustbench")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin
        sys.modules["robustbench"] = package
    return importlib.import_module("robustbench.utils")


@dataclasses.dataclass(frozen=True)
class RobustBenchOptions:
    """Options of :class:`RobustBenchModel`."""

    model_name: str = dataclasses.field(
        kw_only=True, metadata={"help": "the model's name on the RobustBench leaderboard, "
                                        "e.g. Carmon2019Unlabeled"})
    dataset: Literal["cifar10", "cifar100", "imagenet"] = dataclasses.field(
        default="cifar10", metadata={"help": "the data set the model was trained on"})
    threat_model: Literal["Linf", "L2", "corruptions"] = dataclasses.field(
        default="Linf", metadata={"help": "threat model of the RobustBench leaderboard"})
    model_dir: str = dataclasses.field(
        default="./models", metadata={"help": "RobustBench's model directory, holding "
                                              "<dataset>/<threat_model>/<model_name>.pt"})
    architecture: str = dataclasses.field(
        default="", metadata={"help": "'package.module:function' building the bare network "
                                      "instead of RobustBench's model zoo; empty = the zoo"})
    architecture_kwargs: dict = dataclasses.field(
        default_factory=dict, metadata={"help": "keyword arguments of `architecture`"})
    checkpoint_sha256: str = dataclasses.field(
        default="", metadata={"help": "SHA-256 of the weights (of the members' digests for "
                                      "an ensemble), part of the cache key; filled in from "
                                      "the files when empty, checked against them when given"})

    def __post_init__(self):
        if self.architecture and not TARGET_PATTERN.match(self.architecture):
            raise ValueError(f"architecture must be 'package.module:function', got "
                             f"{self.architecture!r}")
        if self.architecture_kwargs and not self.architecture:
            raise ValueError("architecture_kwargs need an architecture")
        digest = self.digest()
        if self.checkpoint_sha256 and self.checkpoint_sha256.lower() != digest:
            raise ValueError(f"the weights of {self.model_name} have SHA-256 {digest}, not "
                             f"the expected {self.checkpoint_sha256}")
        object.__setattr__(self, "checkpoint_sha256", digest)

    def files(self) -> list[Path]:
        """The model's weight files; a missing model is an error saying how to get it."""
        files = checkpoint_files(self.model_dir, self.dataset, self.threat_model,
                                 self.model_name)
        if not files:
            expected = (Path(self.model_dir) / self.dataset / self.threat_model
                        / f"{self.model_name}.pt")
            raise ValueError(
                f"RobustBench model {self.model_name!r} ({self.dataset}, {self.threat_model}) "
                f"not found: no {expected}. robench does not download; on a machine with a "
                f"network run robustbench.utils.load_model({self.model_name!r}, "
                f"model_dir=..., dataset={self.dataset!r}, "
                f"threat_model={self.threat_model!r}) and copy that model directory here")
        return files

    def digest(self) -> str:
        """The content hash of the model's weight files."""
        digests = [checkpoint_digest(f) for f in self.files()]
        if len(digests) == 1:
            return digests[0]
        return hashlib.sha256("".join(digests).encode()).hexdigest()


class RobustBenchModel(Model):
    """A RobustBench model-zoo entry, read from a local model directory (no download).

    ``model_name``, ``dataset`` and ``threat_model`` name it as RobustBench does. Inputs
    are in [0, 1]; the model normalises inside (robench adds nothing). Weights are
    loaded by RobustBench's own loader (``pip install robustbench``), or, with
    ``architecture``, into the network that factory builds. The weights' SHA-256 is part
    of the cache key. Evaluate the weights as they are with ``training = { epochs = 0 }``.
    """

    name = "robustbench"
    Options = RobustBenchOptions

    def build(self, info):
        options = self.options
        if options.digest() != options.checkpoint_sha256:
            raise ValueError(f"the weights of {options.model_name} changed since the "
                             f"experiment was read")
        if options.architecture:
            net = import_target(options.architecture)(**options.architecture_kwargs)
            files = options.files()
            if len(files) != 1:
                raise ValueError(f"{options.model_name} is an ensemble of {len(files)} "
                                 f"checkpoints; load it through RobustBench's model zoo")
            load_checkpoint(net, files[0])
        else:
            net = robustbench_utils().load_model(
                options.model_name, model_dir=options.model_dir, dataset=options.dataset,
                threat_model=options.threat_model)
        net.eval()
        check_logits(net, info)
        return net
