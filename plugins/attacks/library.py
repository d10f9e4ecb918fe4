"""Generic adapters: every catalogued attack of torchattacks, foolbox 3 and ART.

One component class per catalogue entry (``catalogue.json``) is created here at import,
named ``"<library>.<Class>"`` (e.g. ``torchattacks.PGD``, ``foolbox.LinfPGD``,
``art.ProjectedGradientDescent``), whose ``Options`` dataclass is built from the
catalogue's option names, types and defaults (so :func:`robench.options.parse_options`
rejects unknown options with a close match). Importing this module reads only JSON; the
libraries are imported when an attack runs.

Each component combines one library's calls (:class:`TorchattacksCalls`,
:class:`FoolboxCalls`, :class:`ArtCalls`) with how its sweep is answered, which the
public base classes of :mod:`robench.components` do:

* fixed-epsilon attacks are :class:`robench.FixedBudgetAttack` s (one library call per
  eps and chunk, projected onto the eps-ball and the bounds; opt-in ``incremental``
  sweep);
* minimal-distance attacks (no budget argument: DeepFool, Carlini-Wagner,
  Brendel-Bethge, EAD, JSMA, foolbox ``MinimizationAttack`` s) are
  :class:`robench.MinimalAttack` s: one library run, thresholded at every eps on the
  crafting model;
* ``targets`` switches to the library's targeted mode; ``source_model`` crafts the
  adversarials on that model (transfer attack);
* inputs go to the library in chunks of the adapter option ``batch_size`` (torchattacks
  and foolbox; ART batches by itself); each chunk runs with torch, numpy and ``random``
  seeded from the run's generator and the chunk index (restored afterwards); attacks
  with a ``seed`` argument get that seed.

An attack whose norm is an option (``norm``, ``distance``) takes its threat model from
that option, per instance.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable
from typing import Any, ClassVar

from robench import AttackProperties, FixedBudgetAttack, MinimalAttack, ThreatModel

from . import catalogue as _catalogue

_BASE_TYPES: dict[str, Any] = {"bool": bool, "int": int, "float": float, "str": str,
                               "number": int | float, "any": Any, "list": tuple[Any, ...],
                               "norm": int | float | str}


def _option_type(type_string: str) -> Any:
    """The Python annotation of a catalogue type string (see ``catalogue._options``)."""
    optional = type_string.endswith("?")
    base = type_string.rstrip("?")
    if base.startswith("literal:"):
        values = tuple(base[len("literal:"):].split("|"))
        tp: Any = typing.Literal[values]  # type: ignore[valid-type]
    else:
        tp = _BASE_TYPES[base]
    return tp | None if optional and tp is not Any else tp


def _norm_key(value: Any) -> str:
    """Catalogue key of a norm option value: ``"inf"``/``inf`` -> ``"inf"``, ``2.0`` -> ``"2"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "inf" if value == float("inf") else (str(int(value)) if value == int(value)
                                                    else str(value))
    return str(value)


def _field(opt: dict[str, Any]) -> tuple[str, Any, dataclasses.Field]:
    metadata = {"help": opt["help"], "allow_inf": opt["type"].rstrip("?") == "norm"}
    if opt["required"]:
        return opt["name"], _option_type(opt["type"]), dataclasses.field(metadata=metadata)
    default = opt["default"]
    if isinstance(default, list):
        default = tuple(default)
    return (opt["name"], _option_type(opt["type"]),
            dataclasses.field(default=default, metadata=metadata))


def _norm_check(option: str, values: dict[str, str]):
    """A ``__post_init__`` that rejects a norm option value outside ``values``."""
    def __post_init__(self):
        value = getattr(self, option)
        if _norm_key(value) not in values:
            raise ValueError(f"{option} must be one of {sorted(values)}, got {value!r}")
    return __post_init__


def make_options(entry: dict[str, Any]) -> type:
    """A frozen ``Options`` dataclass for one catalogue entry (required fields first;
    fixed-budget entries add the ``incremental`` sweep option)."""
    fields = [_field(o) for o in entry["options"]]
    if not entry["minimal"]:
        fields.append(_incremental_field())
    fields.sort(key=lambda f: f[2].default is not dataclasses.MISSING)
    cls_name = f"{entry['library']}_{entry['name']}_Options"
    namespace = {"__doc__": f"Options of {entry['library']}.{entry['name']} (from the catalogue)."}
    if entry["norm_option"]:
        namespace["__post_init__"] = _norm_check(entry["norm_option"], entry["norm_values"])
    return dataclasses.make_dataclass(cls_name, fields, frozen=True, namespace=namespace)


class LibraryAttack:
    """Shared logic of the library adapters, mixed into a sweep base class.

    ``entry`` is the catalogue entry; subclasses per library implement :meth:`craft` (one
    library call, imported lazily) and may refuse bounds in :meth:`check_inputs`.
    """

    entry: ClassVar[dict[str, Any]] = {}
    name: ClassVar[str]
    options: Any
    library: ClassVar[str | None]
    library_version: ClassVar[str]
    supports_targets: ClassVar[bool]

    def __init__(self, options: Any = None):
        super().__init__(options)  # type: ignore[call-arg]
        self._built: dict[tuple, Any] = {}
        norm_option = self.entry.get("norm_option")
        if norm_option:
            key = _norm_key(getattr(self.options, norm_option))  # checked by the Options
            self.threat_model = ThreatModel(self.entry["norm_values"][key])

    def built(self, key: tuple, build: Callable[[], Any]) -> Any:
        """The library object ``build()`` makes for ``key`` (a model wrapper keyed by the
        model and everything it depends on, or an attack object), made once per attack
        instance: robench creates one instance per unit, so every budget and chunk of a
        unit reuses it."""
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def prepare(self) -> None:
        """Import the library's calls (and the library) now, before the attack runs."""
        importlib.import_module(_CALLS_MODULES[self.entry["library"]], __package__)

    def library_kwargs(self) -> dict[str, Any]:
        """The user's options as keyword arguments of the library class (options the
        adapter itself interprets are left out)."""
        adapter = {o["name"] for o in self.entry["options"] if o.get("adapter")}
        return {f.name: getattr(self.options, f.name) for f in dataclasses.fields(self.options)
                if f.name not in adapter and f.name not in _ADAPTER_FIELDS}

    def chunk_size(self) -> int:
        """The adapter's ``batch_size`` where the catalogue gives the adapter that option
        (ART's ``batch_size`` is the library's own: one chunk)."""
        adapter_batch = any(o["name"] == "batch_size" and o.get("adapter")
                            for o in self.entry["options"])
        return int(self.options.batch_size or 0) if adapter_batch else 0

    def check_inputs(self, x: Any, targets: Any, bounds: tuple[float, float]) -> None:
        """Refuse targets the library cannot use, then the base class's checks."""
        if targets is not None and not self.supports_targets:
            raise ValueError(f"{self.name} has no targeted mode in {self.library} "
                             f"{self.library_version}; run it untargeted")
        if targets is None and self.entry.get("targeted_only"):
            raise ValueError(f"{self.name} is targeted only in {self.library} "
                             f"{self.library_version}: give targets")
        super().check_inputs(x, targets, bounds)  # type: ignore[misc]

    def craft(self, model: Any, x: Any, y: Any, eps: float | None, targets: Any,
              bounds: tuple[float, float], seed: int | None) -> Any:
        """One library call: adversarials for budget ``eps`` (``None``: minimal attack)."""
        raise NotImplementedError


class LibraryFixedBudget(LibraryAttack, FixedBudgetAttack):
    """A fixed-epsilon library attack: one library call per budget."""

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        """The library's adversarials at ``eps``, projected onto the eps-ball and the
        bounds (also on adversarial training's path, which calls it directly)."""
        from robench import attack_runtime as rt

        seed = rt.draw_seed(generator)
        with rt.seeded(seed, x.device), rt.eval_mode(model):
            adv = self.craft(model, x, y, float(eps), targets, bounds, seed)
        return rt.project(x, adv.detach().to(x.device, x.dtype), float(eps),
                          self.threat_model.value, bounds)


class LibraryMinimal(LibraryAttack, MinimalAttack):
    """A minimal-distance library attack: one library run, thresholded by the base class."""

    def search(self, model, x, y, *, bounds, targets=None, generator=None):
        """The library's minimal adversarials (no budget)."""
        from robench import attack_runtime as rt

        return self.craft(model, x, y, None, targets, bounds, rt.draw_seed(generator))


class TorchattacksCalls(LibraryAttack):
    """torchattacks calls: tensors in and out, inputs must lie in [0, 1].

    torchattacks clamps every input and adversarial to [0, 1], so any other data bounds
    are refused with a clear error (use a ``foolbox.*`` or ``art.*`` attack instead).
    Targets use ``set_mode_targeted_by_label``; ``n_classes`` and ``seed`` arguments are
    filled from the model and the generator.
    """

    library = "torchattacks"

    def check_inputs(self, x, targets, bounds):
        if tuple(float(b) for b in bounds) != (0.0, 1.0):
            raise ValueError(
                f"{self.name}: torchattacks clamps inputs to [0, 1], but the data bounds are "
                f"{tuple(bounds)}; use a foolbox.* or art.* attack, which take the bounds")
        super().check_inputs(x, targets, bounds)

    def craft(self, model, x, y, eps, targets, bounds, seed):
        from ._torchattacks import craft

        return craft(self, model, x, y, eps, targets, seed)


class FoolboxCalls(LibraryAttack):
    """foolbox 3 calls: the model is wrapped in ``PyTorchModel`` with the data bounds; the
    criterion is ``Misclassification(y)`` or ``TargetedMisclassification``.

    Minimal attacks run with ``epsilons=None`` (no early stop) and are thresholded by the
    base class, which also covers the L0 attacks (foolbox cannot clip L0 perturbations).
    foolbox's ``SaltAndPepperNoiseAttack`` reports an L2 distance; its threat model here
    is l2.
    """

    library = "foolbox"

    def craft(self, model, x, y, eps, targets, bounds, seed):
        from ._foolbox import craft

        return craft(self, model, x, y, eps, targets, bounds)


class ArtCalls(LibraryAttack):
    """ART calls: the model is wrapped in ``PyTorchClassifier`` (clip values = the data
    bounds, or none when unbounded; input shape and class count from the data and the
    model) and ``generate`` always receives labels: the true labels, or the targets (with
    ``targeted=True``) in targeted mode. ART attacks the model's own predictions when no
    labels are passed; the adapter never lets that happen.

    Inputs make a numpy round trip (ART works on numpy arrays). ``rel_eps_step``, where
    offered, sets ``eps_step = rel_eps_step * eps`` at each eps of a sweep. ART's
    ``DeepFool`` and ``NewtonFool`` ignore the labels and attack the predicted class;
    the minimal-attack success check (on labels) then discards what does not fool.
    """

    library = "art"

    def craft(self, model, x, y, eps, targets, bounds, seed):
        from ._art import craft

        return craft(self, model, x, y, eps, targets, bounds)


_CALLS: dict[str, type[LibraryAttack]] = {"torchattacks": TorchattacksCalls,
                                          "foolbox": FoolboxCalls, "art": ArtCalls}

_CALLS_MODULES = {"torchattacks": "._torchattacks", "foolbox": "._foolbox", "art": "._art"}
"""The module of each library's calls (imported when an attack of the library runs)."""

_ADAPTER_FIELDS = ("incremental",)
"""Options every fixed-budget adapter adds to the catalogue's (never passed to the library)."""


def _incremental_field() -> tuple[str, Any, dataclasses.Field]:
    return ("incremental", bool, dataclasses.field(default=False, metadata={
        "help": "attack at each eps (in increasing order) only the inputs not yet broken at a "
                "smaller one; faster on long grids, but an eps's result then depends on the "
                "grid (recorded as incremental)"}))


def _make_component(entry: dict[str, Any], version: str) -> type[Any]:
    sweep = LibraryMinimal if entry["minimal"] else LibraryFixedBudget
    bases = (_CALLS[entry["library"]], sweep)
    qualname = f"{entry['library']}_{entry['name']}"
    budget = ("minimal-distance: run once, thresholded at every eps" if entry["minimal"]
              else "fixed budget: run once per eps")
    alias = f" (alias of {entry['alias_of']})" if entry["alias_of"] else ""
    norm = f" (set by option {entry['norm_option']})" if entry["norm_option"] else ""
    doc = (f"{entry['summary']}\n\n{entry['library']} {version} "
           f"``{entry['module']}.{entry['class']}``{alias}; threat model "
           f"{entry['threat_model']}{norm}; "
           f"{budget}; {'supports' if entry['targeted'] else 'no'} targeted mode.\n"
           f"Generated from catalogue.json by robench_plugins.attacks.library.")
    namespace = {
        "__doc__": doc, "__module__": __name__, "__qualname__": qualname,
        "name": f"{entry['library']}.{entry['name']}", "entry": entry,
        "Options": make_options(entry), "library_version": version,
        "threat_model": ThreatModel(entry["threat_model"]),
        "supports_targets": bool(entry["targeted"]),
        "properties": AttackProperties(starts_from_input=True, deterministic=True,
                                       monotone=bool(entry["minimal"]), bounded=True),
    }
    return type(qualname, bases, namespace)


def _build_all() -> list[type[Any]]:
    cat = _catalogue.load()
    built = []
    for entry in cat["attacks"]:
        if entry["library"] not in _CALLS:
            continue
        cls = _make_component(entry, cat["versions"][entry["library"]])
        cls.Options.__module__ = __name__
        cls.Options.__qualname__ = cls.Options.__name__
        globals()[cls.__qualname__] = cls  # importable by qualname, hence picklable
        globals()[cls.Options.__name__] = cls.Options
        built.append(cls)
    return built


COMPONENTS: list[type[Any]] = _build_all()
"""Every generated adapter component, in catalogue order."""
