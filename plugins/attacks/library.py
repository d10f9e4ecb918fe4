"""Generic adapters: every catalogued attack of torchattacks, foolbox 3 and ART.

One adapter class per library (:class:`TorchattacksAttack`, :class:`FoolboxAttack`,
:class:`ArtAttack`) holds the shared logic; one component class per catalogue entry
(``catalogue.json``) is created here at import, named ``"<library>.<Class>"`` (e.g.
``torchattacks.PGD``, ``foolbox.LinfPGD``, ``art.ProjectedGradientDescent``), whose
``Options`` dataclass is built from the catalogue's option names, types and defaults
(so :func:`robench.options.parse_options` rejects unknown options with a close match).
Importing this module reads only JSON; the libraries are imported when an attack runs.

How a sweep is answered (:meth:`LibraryAttack.run`):

* fixed-epsilon attacks run once per eps; the result is projected onto the eps-ball
  (clip for Linf, rescale for L2/L1, as foolbox does) and the data bounds, so every
  perturbation is within budget even where a library does not guarantee it;
* minimal-distance attacks (no budget argument: DeepFool, Carlini-Wagner,
  Brendel-Bethge, EAD, JSMA, foolbox ``MinimizationAttack``s) run once with no budget;
  at each eps an input keeps its adversarial if that one fools the crafting model and
  its distance is <= eps, otherwise the clean input. Success is then monotone in eps by
  construction. *Assumption*: the attack's search does not depend on the budget
  (true for these attacks: their budget is only a stopping rule, e.g. JSMA's gamma), so
  the thresholded result equals a run at that budget, up to the stopping point;
* eps = 0 returns the clean inputs (bounded attacks change nothing at zero budget);
* ``targets`` switches to the library's targeted mode; ``source_model`` crafts the
  adversarials on that model (transfer attack), the host evaluates them on ``model``;
* inputs go to the library in chunks of the adapter option ``batch_size`` (torchattacks
  and foolbox; ART batches by itself), so a large test set fits in memory;
* ``generator`` gives one seed per call; every library call (each eps, chunk ``k``) runs
  with torch, numpy and ``random`` seeded by ``seed + k`` inside a forked RNG state
  (:func:`robench_plugins.attacks._runtime.seeded`), so an eps's result does not depend
  on the rest of the grid; attacks with a ``seed`` argument get that seed. The caller's
  global RNG streams are untouched.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from typing import Any, ClassVar

from robench import Attack, AttackProperties, AttackResult, ThreatModel

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
    metadata = {"help": opt["help"]}
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
    """A frozen ``Options`` dataclass for one catalogue entry (required fields first)."""
    fields = [_field(o) for o in entry["options"]]
    fields.sort(key=lambda f: f[2].default is not dataclasses.MISSING)
    cls_name = f"{entry['library']}_{entry['name']}_Options"
    namespace = {"__doc__": f"Options of {entry['library']}.{entry['name']} (from the catalogue)."}
    if entry["norm_option"]:
        namespace["__post_init__"] = _norm_check(entry["norm_option"], entry["norm_values"])
    return dataclasses.make_dataclass(cls_name, fields, frozen=True, namespace=namespace)


class LibraryAttack(Attack):
    """Shared logic of the library adapters (see the module docstring).

    Subclasses implement :meth:`_craft` (one library call, imported lazily) and may
    refuse bounds in :meth:`_check_bounds`. ``entry`` is the catalogue entry.
    """

    entry: ClassVar[dict[str, Any]] = {}
    library_version: ClassVar[str] = ""

    def __init__(self, options: Any = None):
        super().__init__(options)
        norm_option = self.entry.get("norm_option")
        if norm_option:
            key = _norm_key(getattr(self.options, norm_option))  # checked by the Options
            threat_model = ThreatModel(self.entry["norm_values"][key])
            if threat_model is not type(self).threat_model:
                self.__class__ = _norm_variant(type(self), threat_model)

    def __reduce__(self):
        """Pickle as the registered class: a norm variant is rebuilt from the options."""
        base = type(self)
        while base.__qualname__.endswith(_VARIANT_SUFFIX):
            base = base.__bases__[0]
        return base, (self.options,)

    @property
    def minimal(self) -> bool:
        """Whether the attack runs once and is thresholded at every eps."""
        return bool(self.entry["minimal"])

    def library_kwargs(self) -> dict[str, Any]:
        """The user's options as keyword arguments of the library class (options the
        adapter itself interprets, marked ``adapter`` in the catalogue, are left out)."""
        adapter = {o["name"] for o in self.entry["options"] if o.get("adapter")}
        return {f.name: getattr(self.options, f.name) for f in dataclasses.fields(self.options)
                if f.name not in adapter}

    def _check_bounds(self, bounds: tuple[float, float]) -> None:
        """Raise ``ValueError`` when the library cannot honour ``bounds``."""

    def _craft(self, model: Any, x: Any, y: Any, eps: float | None, targets: Any,
               bounds: tuple[float, float], seed: int | None) -> Any:
        """One library call: adversarials for budget ``eps`` (``None``: minimal attack)."""
        raise NotImplementedError

    def _craft_batched(self, model: Any, x: Any, y: Any, eps: float | None, targets: Any,
                       bounds: tuple[float, float], seed: int | None) -> Any:
        """:meth:`_craft` over chunks of the adapter's ``batch_size`` (where the catalogue
        gives the adapter that option), chunk ``k`` seeded with ``seed + k``."""
        import torch

        from . import _runtime as rt

        adapter_batch = any(o["name"] == "batch_size" and o.get("adapter")
                            for o in self.entry["options"])
        size = (self.options.batch_size if adapter_batch else 0) or max(len(x), 1)
        out = []
        for k, start in enumerate(range(0, len(x), size)):
            part = slice(start, start + size)
            chunk_seed = None if seed is None else seed + k
            with rt.seeded(chunk_seed, x.device):
                adv = self._craft(model, x[part], y[part], eps,
                                  None if targets is None else targets[part], bounds, chunk_seed)
            out.append(adv.detach().to(x.device, x.dtype))
        return torch.cat(out) if out else x.clone()

    def _check_call(self, x: Any, targets: Any, bounds: tuple[float, float]) -> None:
        self._check_bounds(bounds)
        if targets is not None and not self.supports_targets:
            raise ValueError(f"{self.name} has no targeted mode in {self.library} "
                             f"{self.library_version}; run it untargeted")
        if targets is None and self.entry.get("targeted_only"):
            raise ValueError(f"{self.name} is targeted only in {self.library} "
                             f"{self.library_version}: give targets")
        lo, hi = bounds
        if len(x) and (x.min() < lo or x.max() > hi):
            raise ValueError(f"{self.name}: inputs lie outside the data bounds {bounds}")

    def run(self, model, x, y, epsilons: Sequence[float], *, bounds, targets=None,
            source_model=None, generator=None) -> AttackResult:
        """Adversarials for every eps of the sweep (see the module docstring)."""
        import torch

        from . import _runtime as rt

        self._check_call(x, targets, bounds)
        crafting = source_model if source_model is not None else model
        seed = rt.draw_seed(generator)
        tm = self.threat_model.value
        details: dict[str, Any] = {"minimal": self.minimal,
                                   "crafted_on": "source_model" if source_model is not None
                                   else "model"}
        with rt.eval_mode(crafting):
            if self.minimal:
                adv = self._craft_batched(crafting, x, y, None, targets, bounds,
                                          seed).clamp(*bounds)
                ok = rt.succeeded(crafting, adv, y, targets).to(x.device)
                dist = torch.where(ok, rt.distance(x, adv, tm), torch.full_like(ok, float("inf"),
                                                                              dtype=x.dtype))
                details["minimal_distances"] = dist.cpu()
                keep = [(dist <= eps).view(-1, *([1] * (x.dim() - 1))) for eps in epsilons]
                adversarials = [torch.where(k, adv, x) for k in keep]
            else:
                adversarials = []
                for eps in epsilons:
                    if eps == 0:
                        adversarials.append(x.clone())
                        continue
                    adv = self._craft_batched(crafting, x, y, float(eps), targets, bounds,
                                              seed)  # the same seed at every eps
                    adversarials.append(rt.project(x, adv, float(eps), tm, bounds))
        return AttackResult(epsilons=list(epsilons), adversarials=adversarials,
                            library=self.library, library_version=self.library_version,
                            details=details)

    def perturb(self, model, x, y, eps, *, bounds, generator=None):
        """One budget, tensors in and out (adversarial training's cheap path)."""
        if self.minimal or eps == 0:
            return super().perturb(model, x, y, eps, bounds=bounds, generator=generator)
        from . import _runtime as rt

        self._check_call(x, None, bounds)
        seed = rt.draw_seed(generator)
        with rt.eval_mode(model):
            adv = self._craft_batched(model, x, y, float(eps), None, bounds, seed)
        return rt.project(x, adv, float(eps), self.threat_model.value, bounds)


class TorchattacksAttack(LibraryAttack):
    """Adapter base for torchattacks: tensors in and out, inputs must lie in [0, 1].

    torchattacks clamps every input and adversarial to [0, 1], so any other data bounds
    are refused with a clear error (use a ``foolbox.*`` or ``art.*`` attack instead).
    Targets use ``set_mode_targeted_by_label``; ``n_classes`` and ``seed`` arguments are
    filled from the model and the generator.
    """

    library = "torchattacks"

    def _check_bounds(self, bounds):
        if tuple(float(b) for b in bounds) != (0.0, 1.0):
            raise ValueError(
                f"{self.name}: torchattacks clamps inputs to [0, 1], but the data bounds are "
                f"{tuple(bounds)}; use a foolbox.* or art.* attack, which take the bounds")

    def _craft(self, model, x, y, eps, targets, bounds, seed):
        from ._torchattacks import craft

        return craft(self, model, x, y, eps, targets, seed)


class FoolboxAttack(LibraryAttack):
    """Adapter base for foolbox 3: the model is wrapped in ``PyTorchModel`` with the data
    bounds; the criterion is ``Misclassification(y)`` or ``TargetedMisclassification``.

    Minimal attacks run with ``epsilons=None`` (no early stop) and are thresholded here,
    which also covers the L0 attacks (foolbox cannot clip L0 perturbations). foolbox's
    ``SaltAndPepperNoiseAttack`` reports an L2 distance; its threat model here is l2.
    """

    library = "foolbox"

    def _craft(self, model, x, y, eps, targets, bounds, seed):
        from ._foolbox import craft

        return craft(self, model, x, y, eps, targets, bounds)


class ArtAttack(LibraryAttack):
    """Adapter base for ART: the model is wrapped in ``PyTorchClassifier`` (clip values =
    the data bounds, or none when unbounded; input shape and class count from the data
    and the model) and ``generate`` always receives labels: the true labels, or the
    targets (with ``targeted=True``) in targeted mode. ART attacks the model's own
    predictions when no labels are passed; the adapter never lets that happen.

    Inputs make a numpy round trip (ART works on numpy arrays). ``rel_eps_step``, where
    offered, sets ``eps_step = rel_eps_step * eps`` at each eps of a sweep. ART's
    ``DeepFool`` and ``NewtonFool`` ignore the labels and attack the predicted class;
    the minimal-attack success check (on labels) then discards what does not fool.
    """

    library = "art"

    def _craft(self, model, x, y, eps, targets, bounds, seed):
        from ._art import craft

        return craft(self, model, x, y, eps, targets, bounds)


_BASES: dict[str, type[LibraryAttack]] = {"torchattacks": TorchattacksAttack,
                                          "foolbox": FoolboxAttack, "art": ArtAttack}


_VARIANT_SUFFIX = "__norm_variant"
_VARIANTS: dict[tuple[type, ThreatModel], type] = {}


def _norm_variant(cls: type[LibraryAttack], threat_model: ThreatModel) -> type[LibraryAttack]:
    """A subclass of ``cls`` whose class-level ``threat_model`` is ``threat_model``.

    An instance whose norm option differs from the catalogue default switches to it, so
    ``type(attack).threat_model`` (what the host reads) matches the norm that runs.
    """
    key = (cls, threat_model)
    if key not in _VARIANTS:
        qualname = f"{cls.__qualname__}_{threat_model.value}{_VARIANT_SUFFIX}"
        _VARIANTS[key] = type(qualname, (cls,), {
            "__qualname__": qualname, "__module__": __name__, "__doc__": cls.__doc__,
            "threat_model": threat_model})
    return _VARIANTS[key]


def _make_component(entry: dict[str, Any], version: str) -> type[LibraryAttack]:
    base = _BASES[entry["library"]]
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
    return type(qualname, (base,), namespace)


def _build_all() -> list[type[LibraryAttack]]:
    cat = _catalogue.load()
    built = []
    for entry in cat["attacks"]:
        if entry["library"] not in _BASES:
            continue
        cls = _make_component(entry, cat["versions"][entry["library"]])
        cls.Options.__module__ = __name__
        cls.Options.__qualname__ = cls.Options.__name__
        globals()[cls.__qualname__] = cls  # importable by qualname, hence picklable
        globals()[cls.Options.__name__] = cls.Options
        built.append(cls)
    return built


COMPONENTS: list[type[LibraryAttack]] = _build_all()
"""Every generated adapter component, in catalogue order."""
