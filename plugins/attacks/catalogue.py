"""The catalogue of library attacks: generated from the pinned libraries, read as JSON.

``catalogue.json`` (committed beside this module) lists every attack class of
torchattacks, foolbox 3 and ART that robench can drive generically: its name, threat
model, constructor options with defaults and help, whether it is a minimal-distance
attack (run once, thresholded at every eps), whether it supports targets, and how its
budget is passed. Registration reads only the JSON (:func:`load`), so listing plugins
never imports torch or an attack library.

Regenerate after upgrading a library::

    python -m robench_plugins.attacks.catalogue --write

``tests/test_attacks_catalogue.py`` regenerates it in memory and fails on drift.
Classes that cannot be driven generically are listed under ``skipped`` with the reason.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")
"""Where the committed catalogue lives."""

LIBRARIES = ("torchattacks", "foolbox", "art")
"""Libraries covered, in the order they appear in the catalogue."""

_SCALARS = (bool, int, float, str, type(None))


def load(path: Path = CATALOGUE_PATH) -> dict[str, Any]:
    """Read the committed catalogue (plain JSON, no library import)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# --------------------------------------------------------------------------- helpers


def _doc_help(cls: type, name: str) -> str:
    """First line of the help text of constructor argument ``name`` in the docstrings.

    Understands torchattacks (``eps (float): text``), foolbox (``steps : text``) and
    ART/Sphinx (``:param eps: text``) conventions.
    """
    docs = "\n".join(d for d in (cls.__doc__, cls.__init__.__doc__) if d)
    for pattern in (rf":param {re.escape(name)}:\s*(.+)",
                    rf"^\s*{re.escape(name)}\s*(?:\([^)\n]*\))?\s*:\s*(.+)$"):
        match = re.search(pattern, docs, flags=re.MULTILINE)
        if match:
            return match.group(1).strip()
    return ""


def _type_from_annotation(annotation: Any) -> str | None:
    """Map a constructor annotation to a catalogue type string, or None if unusable.

    Type strings: ``bool``, ``int``, ``float``, ``number`` (int or float), ``str``,
    ``literal:a|b``; a ``?`` suffix means ``None`` is allowed.
    """
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):  # postponed annotations, e.g. ART's "int | float"
        return _type_from_string(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation in (bool, int, float, str):
        return annotation.__name__
    if origin is typing.Literal:
        return "literal:" + "|".join(str(a) for a in args)
    if origin is typing.Union:
        optional = type(None) in args
        inner = [a for a in args if a is not type(None)]
        literals = [v for a in inner if typing.get_origin(a) is typing.Literal
                    for v in typing.get_args(a)]
        if literals and len(literals) == sum(
                len(typing.get_args(a)) for a in inner if typing.get_origin(a) is typing.Literal) \
                and all(typing.get_origin(a) is typing.Literal for a in inner):
            return "literal:" + "|".join(str(v) for v in literals) + ("?" if optional else "")
        names = {a.__name__ for a in inner if isinstance(a, type)}
        if names and names <= {"int", "float", "ndarray"} and names & {"int", "float"}:
            base = "number" if "float" in names else "int"
            return base + ("?" if optional else "")
        if len(inner) == 1:
            sub = _type_from_annotation(inner[0])
            return None if sub is None else sub.rstrip("?") + ("?" if optional else "")
        if names == {"str", "int", "float"} or names == {"int", "float", "str"}:
            return None
    return None


def _type_from_string(annotation: str) -> str | None:
    """Catalogue type of a string annotation such as ``"int | float | np.ndarray"``."""
    names = {part.strip().strip("'\"") for part in annotation.split("|")}
    optional = "None" in names
    names -= {"None", "np.ndarray"}
    if names in ({"int"}, {"float"}, {"bool"}, {"str"}):
        base = names.pop()
    elif names == {"int", "float"}:
        base = "number"
    else:
        return None
    return base + ("?" if optional else "")


def _type_from_default(default: Any) -> str | None:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "number"  # unannotated ints are often rates or constants (torchattacks' c=1)
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    return None


def _json_default(default: Any) -> Any:
    """The default as JSON: inf becomes the string "inf", tuples become lists."""
    if isinstance(default, float) and default == float("inf"):
        return "inf"
    if isinstance(default, tuple):
        return [_json_default(d) for d in default]
    if hasattr(default, "item") and getattr(default, "ndim", 1) == 0:  # numpy scalar
        return _json_default(default.item())
    return default


_BATCH_OPTION = {"name": "batch_size", "type": "int", "required": False, "default": 256,
                 "adapter": True,
                 "help": "inputs per library call (the adapter splits larger sets; "
                         "0 = all at once)"}
"""Adapter option of torchattacks and foolbox entries (ART batches by itself)."""


def _options(cls: type, exclude: set[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Constructor options usable from TOML, and the names that were left out."""
    options, dropped = [], []
    for param in inspect.signature(cls.__init__).parameters.values():
        if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name in exclude:
            continue
        default = param.default
        required = default is inspect.Parameter.empty
        if hasattr(default, "item") and getattr(default, "ndim", 1) == 0:
            default = default.item()
        if isinstance(default, tuple) and all(isinstance(d, _SCALARS) for d in default):
            kind = "list"
        elif not required and not isinstance(default, _SCALARS):
            dropped.append(param.name)
            continue
        else:
            kind = _type_from_annotation(param.annotation)
            if kind is None or (kind == "int" and isinstance(default, float)):
                kind = _type_from_default(default) if not required else None
            if kind is None and default is None and param.annotation is inspect.Parameter.empty:
                kind = "any"
            if kind is None:
                dropped.append(param.name)
                continue
            if default is None and not kind.endswith("?") and kind != "any":
                kind += "?"
        if isinstance(default, float) and default == float("inf") and kind in ("int", "float"):
            kind = "number"
        options.append({"name": param.name, "type": kind, "required": required,
                        "default": None if required else _json_default(default),
                        "help": _doc_help(cls, param.name)})
    return options, dropped


def _summary(cls: type) -> str:
    doc = inspect.cleandoc(cls.__doc__ or "")
    return doc.splitlines()[0].strip() if doc else cls.__name__


def _version(module_name: str) -> str:
    from importlib import metadata

    dist = {"torchattacks": "torchattacks", "foolbox": "foolbox",
            "art": "adversarial-robustness-toolbox"}[module_name]
    return metadata.version(dist)


# ---------------------------------------------------------------------- torchattacks

_TA_NORMS = {"Linf": "linf", "L2": "l2", "L1": "l1", "L0": "l0"}
_TA_EPS_PARAMS = ("eps", "max_epsilon")
_TA_ADAPTER_PARAMS = {"model", "seed", "n_classes"}
_TA_TARGETED_ONLY = {"JSMA"}  # untargeted, it silently targets (label + 1) % 10


def _torchattacks() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    import torch
    import torchattacks

    probe = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    entries, skipped = [], []
    for name in torchattacks.__all__:
        cls = getattr(torchattacks, name)
        if not (isinstance(cls, type) and issubclass(cls, torchattacks.attack.Attack)):
            continue
        params = inspect.signature(cls.__init__).parameters
        if "model" not in params or any(p.default is inspect.Parameter.empty
                                         for n, p in params.items() if n not in ("self", "model")):
            skipped.append({"library": "torchattacks", "name": name,
                            "reason": "needs constructor arguments other than a model"})
            continue
        match = re.search(r"Distance Measure\s*:\s*([^\n]*)", cls.__doc__ or "")
        measures = re.findall(r"L(?:inf|\d)", match.group(1)) if match else []
        measures_text = match.group(1) if match else ""
        if not measures or " and " in measures_text:
            skipped.append({"library": "torchattacks", "name": name,
                            "reason": f"no single threat model (Distance Measure: "
                                      f"{measures_text.strip() or 'none'})"})
            continue
        eps_param = next((p for p in _TA_EPS_PARAMS if p in params), None)
        norm_values = None
        if "norm" in params:
            norm_values = {m: _TA_NORMS[m] for m in measures}
            threat_model = norm_values[params["norm"].default]
        elif len(measures) == 1:
            threat_model = _TA_NORMS[measures[0]]
        else:
            skipped.append({"library": "torchattacks", "name": name,
                            "reason": f"several threat models but no norm option "
                                      f"({measures_text})"})
            continue
        instance = cls(probe)
        options, dropped = _options(cls, _TA_ADAPTER_PARAMS | {eps_param} | {"verbose"})
        options.append(dict(_BATCH_OPTION))
        for opt in options:
            if opt["name"] == "norm" and norm_values:
                opt.update(type="literal:" + "|".join(norm_values),
                           help=opt["help"] or "norm of the budget (sets the threat model)")
        entries.append({
            "library": "torchattacks", "name": name, "module": cls.__module__,
            "class": cls.__name__, "alias_of": None, "summary": _summary(cls),
            "threat_model": threat_model, "norm_option": "norm" if norm_values else None,
            "norm_values": norm_values, "eps_param": eps_param,
            "minimal": eps_param is None,
            "targeted": "targeted" in instance.supported_mode,
            "targeted_only": name in _TA_TARGETED_ONLY,
            "seed_param": "seed" if "seed" in params else None,
            "n_classes_param": "n_classes" if "n_classes" in params else None,
            "options": options, "dropped_options": dropped,
        })
    return entries, skipped


# --------------------------------------------------------------------------- foolbox

_FB_P = {0: "l0", 1: "l1", 2: "l2", float("inf"): "linf"}
_FB_DISTANCES = {"l1": "l1", "l2": "l2", "linf": "linf"}
_FB_TARGETED_ONLY = {"GenAttack"}  # raises on an untargeted criterion


def _foolbox() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    import foolbox.attacks as fa
    from foolbox.attacks.base import (
        FixedEpsilonAttack,
        FlexibleDistanceMinimizationAttack,
        MinimizationAttack,
    )

    classes = {n: c for n, c in vars(fa).items() if isinstance(c, type)
               and issubclass(c, fa.Attack) and c.__name__ == n and not inspect.isabstract(c)}
    aliases = {n: c.__name__ for n, c in vars(fa).items() if isinstance(c, type)
               and issubclass(c, fa.Attack) and c.__name__ != n}
    entries, skipped = [], []
    by_class: dict[str, dict[str, Any]] = {}
    for name, cls in sorted(classes.items()):
        if not issubclass(cls, (FixedEpsilonAttack, MinimizationAttack)):
            skipped.append({"library": "foolbox", "name": name,
                            "reason": "neither a fixed-epsilon nor a minimization attack"})
            continue
        params = inspect.signature(cls.__init__).parameters
        flexible = issubclass(cls, FlexibleDistanceMinimizationAttack)
        if flexible and "distance" not in params:
            skipped.append({"library": "foolbox", "name": name,
                            "reason": "flexible-distance attack without a distance option"})
            continue
        if name in ("DatasetAttack", "BinarizationRefinementAttack"):
            skipped.append({"library": "foolbox", "name": name,
                            "reason": "needs extra inputs (a dataset feed or starting points)"})
            continue
        norm_values = None
        if flexible:
            norm_values = dict(_FB_DISTANCES)
            threat_model = "l2"
        else:
            try:
                required = {n: 1 for n, p in params.items()
                            if n != "self" and p.default is inspect.Parameter.empty
                            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
                threat_model = _FB_P[cls(**required).distance.p]
            except Exception as err:  # noqa: BLE001 - recorded, never hidden
                skipped.append({"library": "foolbox", "name": name,
                                "reason": f"distance unknown: {type(err).__name__}: {err}"})
                continue
        source = "".join(inspect.getsource(k) for k in cls.__mro__
                         if k.__module__.startswith("foolbox.attacks"))
        options, dropped = _options(cls, {"distance"})
        options.append(dict(_BATCH_OPTION))
        if flexible:
            options.insert(0, {"name": "distance", "type": "literal:l1|l2|linf",
                               "required": False, "default": "l2",
                               "help": "distance the attack minimises (sets the threat model)"})
        entry = {
            "library": "foolbox", "name": name, "module": cls.__module__,
            "class": cls.__name__, "alias_of": None, "summary": _summary(cls),
            "threat_model": threat_model, "norm_option": "distance" if flexible else None,
            "norm_values": norm_values, "eps_param": None,
            "minimal": issubclass(cls, MinimizationAttack),
            "targeted": "TargetedMisclassification" in source,
            "targeted_only": name in _FB_TARGETED_ONLY,
            "seed_param": None, "n_classes_param": None,
            "options": options, "dropped_options": dropped,
        }
        entries.append(entry)
        by_class[name] = entry
    for alias, target in sorted(aliases.items()):
        if target in by_class:
            entries.append(dict(by_class[target], name=alias, alias_of=target))
    return entries, skipped


# ------------------------------------------------------------------------------- ART

_ART_THREAT_MODELS: dict[str, str | None] = {
    # attacks with a ``norm`` argument (None: the option sets the threat model)
    "FastGradientMethod": None, "ProjectedGradientDescent": None,
    "MomentumIterativeMethod": None, "AutoProjectedGradientDescent": None,
    "AutoConjugateGradient": None, "AutoAttack": None, "SquareAttack": None,
    "HopSkipJump": None, "BrendelBethgeAttack": None, "GeoDA": None,
    # attacks of one norm, from ART's documentation of each class
    "BasicIterativeMethod": "linf", "DeepFool": "l2", "NewtonFool": "l2",
    "CarliniL2Method": "l2", "CarliniLInfMethod": "linf", "CarliniL0Method": "l0",
    "ElasticNet": "l1", "SaliencyMapMethod": "l0", "BoundaryAttack": "l2",
    "ZooAttack": "l2", "SimBA": "l2", "SignOPTAttack": "l2",
}
"""ART evasion attacks for image classifiers that robench drives, with their threat
model. ART has no machine-readable norm for classes without a ``norm`` argument, so this
table is the one hand-written part of the catalogue; other classes are listed as skipped."""

_ART_NORMS = {"inf": "linf", "1": "l1", "2": "l2", "0": "l0"}
_ART_TARGETED_ONLY = {"SaliencyMapMethod"}  # generate(x, y) reads y as target classes
_ART_ADAPTER_PARAMS = {"estimator", "classifier", "targeted", "verbose", "eps"}


def _art() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    import art.attacks.evasion as ev
    from art.attacks.attack import EvasionAttack

    entries, skipped = [], []
    for name in sorted(dir(ev)):
        cls = getattr(ev, name)
        if not (isinstance(cls, type) and issubclass(cls, EvasionAttack)):
            continue
        if name not in _ART_THREAT_MODELS:
            skipped.append({"library": "art", "name": name,
                            "reason": "not an image-classifier attack with a known threat model"})
            continue
        params = inspect.signature(cls.__init__).parameters
        options, dropped = _options(cls, _ART_ADAPTER_PARAMS)
        norm_values = None
        threat_model = _ART_THREAT_MODELS[name]
        for opt in options:
            if opt["name"] == "norm":
                default = str(opt["default"]).replace(".0", "")
                norm_values = dict(_ART_NORMS)
                opt.update(type="norm", default=default)
                threat_model = _ART_NORMS[default]
        if "eps_step" in params and "eps" in params:
            options.append({"name": "rel_eps_step", "type": "float?", "required": False,
                            "default": None, "adapter": True,
                            "help": "if set, eps_step = rel_eps_step * eps at every eps of "
                                    "the sweep (overrides eps_step)"})
        entries.append({
            "library": "art", "name": name, "module": cls.__module__, "class": cls.__name__,
            "alias_of": None, "summary": _summary(cls), "threat_model": threat_model,
            "norm_option": "norm" if norm_values else None, "norm_values": norm_values,
            "eps_param": "eps" if "eps" in params else None, "minimal": "eps" not in params,
            "targeted": "targeted" in cls.attack_params or name in _ART_TARGETED_ONLY,
            "targeted_only": name in _ART_TARGETED_ONLY,
            "seed_param": None, "n_classes_param": None,
            "options": options, "dropped_options": dropped,
        })
    return entries, skipped


# ------------------------------------------------------------------------ generation


def generate() -> dict[str, Any]:
    """Introspect the installed libraries and return the catalogue (imports them all)."""
    out: dict[str, Any] = {"versions": {}, "attacks": [], "skipped": []}
    builders = {"torchattacks": _torchattacks, "foolbox": _foolbox, "art": _art}
    for lib in LIBRARIES:
        entries, skipped = builders[lib]()
        out["versions"][lib] = _version(lib)
        out["attacks"] += sorted(entries, key=lambda e: e["name"])
        out["skipped"] += sorted(skipped, key=lambda e: e["name"])
    return out


def dumps(catalogue: dict[str, Any]) -> str:
    """The catalogue as committed: indented, sorted keys, trailing newline."""
    return json.dumps(catalogue, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: print the catalogue, or ``--write`` it to ``catalogue.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {CATALOGUE_PATH.name}")
    args = parser.parse_args(argv)
    text = dumps(generate())
    if args.write:
        CATALOGUE_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {CATALOGUE_PATH}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
