"""A generated corpus of hostile experiment files, run through the CLI in-process.

Every invalid file must give exit status 2 and exactly one line on stderr naming the key
(or, for files that are not TOML at all, the file); every valid one exit 0. Nothing may
end in a traceback or hang (each case runs under an alarm). The corpus mutates one valid
file, section by section and option by option: wrong types, non-finite and out-of-range
numbers, oversized sweeps, unusable labels and paths, bad nested components, misused
grids and ``import:`` model shorthands, bad ``-o`` overrides (whose errors also name the
override), plus property-based cases (hypothesis, derandomized) checked against the rules
written out here, independently of the validation code.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import typing
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robench.cli import main
from robench.plugins import build_registry

CASE_SECONDS = 10
"""Alarm per case: validation must never hang."""

BASE: dict = {
    "experiment": {"name": "fuzz", "seeds": [0, 1], "device": "cpu"},
    "data": {"dataset": "digits", "test_subset": 50},
    "training": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "epochs": 2,
                 "batch_size": 32, "lr_milestones": [1], "lr_gamma": 0.1},
    "models": [{"name": "mlp", "model": "mlp", "hidden": [8]}],
    "defenses": {
        "none": [],
        "l2": [{"defense": "weight_decay", "coefficient": 0.01}],
        "pgd": [{"defense": "adversarial_training", "attack": "torchattacks.PGD",
                 "eps": 0.1, "attack_options": {"steps": 3, "alpha": 0.04}, "mix": 0.5}],
    },
    "attacks": [
        {"name": "fgsm", "attack": "torchattacks.FGSM",
         "epsilons": {"start": 0, "stop": 0.5, "step": "1/8"}},
        {"name": "pgd", "attack": "foolbox.LinfPGD", "steps": 5, "rel_stepsize": 0.1,
         "epsilons": ["1/255", "8/255", 0.5], "samples": 20, "examples": 2},
        {"name": "swap", "attack": "pixel_swap", "epsilons": [0, 0.1, 0.5]},
    ],
    "metrics": {"use": ["clean_accuracy", "robust_accuracy", "auc"]},
    "report": {"formats": ["md"]},
}
"""A valid experiment using built-in plugins only (validation imports no torch)."""


# ------------------------------------------------------------------ TOML writing

def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                 for k, v in value.items()) + " }"
    raise TypeError(value)


def to_toml(doc: dict) -> str:
    """A small TOML writer: top-level tables and arrays of tables, inline below."""
    lines = []
    for section, body in doc.items():
        if isinstance(body, dict):
            lines.append(f"[{_toml_key(section)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items()]
        elif isinstance(body, list) and body and all(isinstance(e, dict) for e in body):
            for entry in body:
                lines.append(f"[[{_toml_key(section)}]]")
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items()]
        else:
            lines.insert(0, f"{_toml_key(section)} = {_toml_value(body)}")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ running one case

class _Hang(Exception):
    pass


@contextmanager
def _alarm(seconds: int):
    def ring(signum, frame):
        raise _Hang(f"no answer within {seconds} s")
    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def validate(path, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    with _alarm(CASE_SECONDS):
        code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err.splitlines()


def check_invalid(path, capsys, key: str) -> None:
    code, lines = validate(path, capsys)
    assert code == 2, (key, lines)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"robench: error: {path}"), lines
    assert f"{key}: " in lines[0] or f"{key}[" in lines[0] or f"{key}." in lines[0], \
        (key, lines[0])


def base(tmp_path) -> dict:
    doc = copy.deepcopy(BASE)
    doc["experiment"]["output"] = str(tmp_path / "out")
    return doc


@pytest.fixture
def write(tmp_path):
    counter = iter(range(10**6))

    def write(doc: dict):
        path = tmp_path / f"case{next(counter)}.toml"
        path.write_text(to_toml(doc))
        return path
    return write


def test_the_base_file_is_valid(tmp_path, write, capsys):
    assert validate(write(base(tmp_path)), capsys)[0] == 0


# ------------------------------------------------------------------ hand-written cases

def _set(path: str, value):
    """A mutation setting ``path`` (``a.b[0].c``) to ``value``; ``DELETE`` removes it."""
    def mutate(doc):
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        target = doc
        for part in parts[:-1]:
            target = target[int(part[1:-1])] if part.startswith("[") else target[part]
        last = parts[-1]
        if last.startswith("["):
            target[int(last[1:-1])] = value
        elif value is DELETE:
            del target[last]
        else:
            target[last] = value
    return mutate


DELETE = object()
LONG = "m" * 65


def _all(*mutations):
    """A mutation applying ``mutations`` in order."""
    def mutate(doc):
        for mutation in mutations:
            mutation(doc)
    return mutate


def _imported(model: str):
    """The model entry turned into ``model = MODEL`` (an import shorthand) without the
    mlp's options."""
    return _all(_set("models[0].model", model), _set("models[0].hidden", DELETE))

CASES = [
    # (mutation, key named in the error)
    (_set("models", ["mlp"]), "models[0]"),
    (_set("attacks", [7]), "attacks[0]"),
    (_set("models", []), "models"),
    (_set("attacks", "fgsm"), "attacks"),
    (_set("defenses", ["none"]), "defenses"),
    (_set("defenses.l2", [3]), "defenses.l2"),
    (_set("metrics", ["auc"]), "metrics"),
    (_set("report", "md"), "report"),
    (_set("data", "digits"), "data"),
    (_set("experiment.seeds", []), "experiment.seeds"),
    (_set("experiment.seeds", [0, 0]), "experiment.seeds"),
    (_set("experiment.seeds", [-1]), "experiment.seeds"),
    (_set("experiment.seeds", [2**63]), "experiment.seeds"),
    (_set("experiment.seeds", [0.5]), "experiment.seeds"),
    (_set("attacks[0].epsilons", {"start": math.nan, "stop": 1, "num": 3}),
     "attacks[0].epsilons.start"),
    (_set("attacks[0].epsilons", {"start": 0, "stop": math.inf, "num": 3}),
     "attacks[0].epsilons.stop"),
    (_set("attacks[0].epsilons", {"start": 0, "stop": 1, "num": 1e9}), "attacks[0].epsilons.num"),
    (_set("attacks[0].epsilons", {"start": 0, "stop": 1, "num": 10**9}),
     "attacks[0].epsilons.num"),
    (_set("attacks[0].epsilons", {"start": 0, "stop": 1, "step": 1e-12}),
     "attacks[0].epsilons.step"),
    (_set("attacks[0].epsilons", {"start": 0, "stop": 1, "step": 5e-324}),
     "attacks[0].epsilons.step"),
    (_set("attacks[0].epsilons", {"start": 0, "stop": 1, "step": 0}),
     "attacks[0].epsilons.step"),
    (_set("attacks[0].epsilons", {"start": 0, "stop": "1e400", "num": 2}),
     "attacks[0].epsilons.stop"),
    (_set("attacks[0].epsilons", ["1e400"]), "attacks[0].epsilons[0]"),
    (_set("attacks[0].epsilons", [math.nan]), "attacks[0].epsilons[0]"),
    (_set("attacks[0].epsilons", [-0.1, 0.1]), "attacks[0].epsilons"),
    (_set("attacks[0].epsilons", [0.2, 0.1]), "attacks[0].epsilons"),
    (_set("attacks[0].epsilons", []), "attacks[0].epsilons"),
    (_set("attacks[0].epsilons", [0.0] * 10_001), "attacks[0].epsilons"),
    (_set("attacks[0].epsilons", {"start": 1, "stop": 0, "num": 2}), "attacks[0].epsilons"),
    (_set("attacks[0].epsilons", {"start": 0, "stop": 1}), "attacks[0].epsilons"),
    (_set("attacks[0].epsilons", {"start": 0, "stop": 1, "num": 2, "step": 1}),
     "attacks[0].epsilons"),
    (_set("attacks[0].epsilons", {"begin": 0}), "attacks[0].epsilons.begin"),
    (_set("attacks[0].epsilons", "0.1"), "attacks[0].epsilons"),
    (_set("attacks[0].epsilons", DELETE), "attacks[0].epsilons"),
    (_set("attacks[2].epsilons", [0, 0.5, 1.5]), "attacks[2].epsilons"),
    (_set("attacks[1].examples", -1), "attacks[1].examples"),
    (_set("attacks[1].examples", "all"), "attacks[1].examples"),
    (_set("attacks[1].samples", 0), "attacks[1].samples"),
    (_set("attacks[1].targets", "some"), "attacks[1].targets"),
    (_set("attacks[1].source", "mlp"), "attacks[1].source"),
    (_set("attacks[1].source", "mlp/nothing"), "attacks[1].source"),
    (_set("attacks[1].source", "cnn/none"), "attacks[1].source"),
    (_set("attacks[1].attack", 7), "attacks[1].attack"),
    (_set("attacks[1].attack", "foolbox.LinfPDG"), "attacks[1].attack"),
    (_set("attacks[1].attack", DELETE), "attacks[1].attack"),
    (_set("attacks[1].library", 3), "attacks[1].library"),
    (_set("attacks[1].rel_stepsize", math.nan), "attacks[1].rel_stepsize"),
    (_set("attacks[1].rel_stepsize", math.inf), "attacks[1].rel_stepsize"),
    (_set("attacks[1].rel_stepsize", "1e400"), "attacks[1].rel_stepsize"),
    (_set("attacks[1].name", "fgsm"), "attacks[1].name"),
    (_set("training.lr", math.inf), "training.lr"),
    (_set("training.lr", math.nan), "training.lr"),
    (_set("training.lr", -1.0), "training.lr"),
    (_set("training.lr_milestones", [-1]), "training.lr_milestones"),
    (_set("training.lr_milestones", [math.nan]), "training.lr_milestones"),
    (_set("training.lr_gamma", 0), "training.lr_gamma"),
    (_set("training.momentum", -0.5), "training.momentum"),
    (_set("training.epochs", -1), "training.epochs"),
    (_set("training.batch_size", 0), "training.batch_size"),
    (_set("training.optimizer", "adamw"), "training.optimizer"),
    (_set("training.augment", "flip"), "training.augment"),
    (_set("training.steps", 3), "training.steps"),
    (_set("models[0].training", {"lr": math.inf}), "models[0].training.lr"),
    (_set("models[0].training", 3), "models[0].training"),
    (_set("models[0].std", [math.nan]), "models[0].std"),
    (_set("models[0].mean", [math.inf]), "models[0].mean"),
    (_set("models[0].hidden", [math.nan]), "models[0].hidden"),
    (_set("models[0].model", "mpl"), "models[0].model"),
    (_set("models[0].defenses", ["nothing"]), "models[0].defenses"),
    (_set("models[0].defenses", "none"), "models[0].defenses"),
    (_set("models[0].defenses", []), "models[0].defenses"),
    (_set("models[0].name", DELETE), "models[0].name"),
    (_set("defenses.l2[0].coefficient", math.nan), "defenses.l2[0].coefficient"),
    (_set("defenses.l2[0].coefficient", math.inf), "defenses.l2[0].coefficient"),
    (_set("defenses.l2[0].defense", "weight_decy"), "defenses.l2[0].defense"),
    (_set("defenses.l2[0].defense", DELETE), "defenses.l2[0]"),
    (_set("defenses.pgd[0].attack", "torchattacks.PDG"), "defenses.pgd[0].attack"),
    (_set("defenses.pgd[0].attack", 3), "defenses.pgd[0].attack"),
    (_set("defenses.pgd[0].attack_options", {"stepz": 3}), "defenses.pgd[0].attack_options.stepz"),
    (_set("defenses.pgd[0].attack_options", {"alpha": math.nan}),
     "defenses.pgd[0].attack_options.alpha"),
    (_set("defenses.pgd[0].attack_options", {"steps": "many"}),
     "defenses.pgd[0].attack_options.steps"),
    (_set("defenses.pgd[0].attack_options", 3), "defenses.pgd[0].attack_options"),
    (_set("defenses.pgd[0].eps", math.inf), "defenses.pgd[0].eps"),
    (_set("defenses.pgd[0].mix", 2.0), "defenses.pgd[0].mix"),
    (_set("metrics.use", ["auc", "auc"]), "metrics.use"),
    (_set("metrics.use", ["auk"]), "metrics.use[0]"),
    (_set("metrics.use", "auc"), "metrics.use"),
    (_set("metrics.use", [3]), "metrics.use"),
    (_set("metrics.auc", {"nothing": 1}), "metrics.auc"),
    (_set("report.formats", ["pdf"]), "report.formats"),
    (_set("report.eps", [math.nan]), "report.eps[0]"),
    (_set("report.eps", ["1e400"]), "report.eps[0]"),
    (_set("report.reporters", ["summry"]), "report.reporters[0]"),
    (_set("report.reporters", ["summary", "summary"]), "report.reporters"),
    (_set("report.reporters", "summary"), "report.reporters"),
    (_set("report.style", "dark"), "report.style"),
    (_set("experiment.device", "gpu"), "experiment.device"),
    (_set("experiment.device", "cuda:x"), "experiment.device"),
    (_set("experiment.device", 0), "experiment.device"),
    (_set("experiment.threads", 0), "experiment.threads"),
    (_set("experiment.threads", 1.5), "experiment.threads"),
    (_set("experiment.unit_timeout", -1), "experiment.unit_timeout"),
    (_set("experiment.unit_timeout", math.nan), "experiment.unit_timeout"),
    (_set("experiment.unit_timeout", math.inf), "experiment.unit_timeout"),
    (_set("experiment.unit_timeout", "1h"), "experiment.unit_timeout"),
    (_set("experiment.executor", "cluster"), "experiment.executor"),
    (_set("experiment.executor_options", {"nope": 1}), "experiment.executor_options.nope"),
    (_set("experiment.executor_options", 3), "experiment.executor_options"),
    (_set("experiment.output", ""), "experiment.output"),
    (_set("experiment.output", "runs/a\0b"), "experiment.output"),
    (_set("experiment.output", "runs/" + "x" * 300), "experiment.output"),
    (_set("experiment.output", "runs/" + "/".join(["x" * 200] * 25)), "experiment.output"),
    (_set("experiment.model_cache", ""), "experiment.model_cache"),
    (_set("experiment.model_cache", "a\0"), "experiment.model_cache"),
    (_set("experiment.name", ".."), "experiment.name"),
    (_set("experiment.name", "a/b"), "experiment.name"),
    (_set("experiment.name", "a--b"), "experiment.name"),
    (_set("experiment.name", LONG), "experiment.name"),
    (_set("experiment.nme", "x"), "experiment.nme"),
    (_set("models[0].name", "a--b"), "models[0].name"),
    (_set("models[0].name", "a/b"), "models[0].name"),
    (_set("models[0].name", LONG), "models[0].name"),
    (_set("models[0].name", "."), "models[0].name"),
    (_set("attacks[0].name", "x--y"), "attacks[0].name"),
    (_set("attacks[0].name", "x\\y"), "attacks[0].name"),
    (_set("attacks[0].name", LONG), "attacks[0].name"),
    (_set("data.dataset", "digts"), "data.dataset"),
    (_set("data.dataset", DELETE), "data.dataset"),
    (_set("data.test_subset", -3), "data.test_subset"),
    (_set("data.root", ""), "data.root"),
    (_set("data.root", "a\0"), "data.root"),
    (_set("extra", {"x": 1}), "extra"),
    # grids
    (_set("models[0].hidden", {"grid": []}), "models[0].hidden.grid"),
    (_set("models[0].hidden", {"grid": 3}), "models[0].hidden.grid"),
    (_set("models[0].hidden", {"grid": [[8], "x"]}), "models[0].hidden.grid"),
    (_set("models[0].hidden", {"grid": [[8], [8]]}), "models[0].hidden.grid"),
    (_set("models[0].hidden", {"grid": {"a/b": [8]}}), "models[0].hidden.grid"),
    (_set("models[0].hidden", {"grid": [[i] for i in range(1, 1002)]}), "models[0].hidden"),
    (_set("models[0].hidden", {"grid": [[8], [0]]}), "models[0].hidden"),
    (_set("models[0].hidden", [{"grid": [8]}]), "models[0].hidden[0]"),
    (_set("models[0].hidden", {"grid": [[{"grid": [1]}]]}), "models[0].hidden.grid"),
    (_set("models[0].name", {"grid": ["a", "b"]}), "models[0].name"),
    (_all(_set("models[0].name", "m" * 60), _set("models[0].hidden", {"grid": [[8]]})),
     "models[0].hidden"),  # the expanded label is too long
    (_set("models[0].model", {"grid": ["mlp"]}), "models[0].model"),
    (_set("models[0].training", {"epochs": {"grid": [1, -1]}}), "models[0].training.epochs"),
    (_set("models[0]", {"grid": [1]}), "models[0]"),
    (_set("training.epochs", {"grid": [1, 2]}), "training.epochs"),
    (_set("data.test_subset", {"grid": [10]}), "data.test_subset"),
    (_set("experiment.executor_options", {"grid": [{}]}), "experiment.executor_options"),
    (_set("report.formats", {"grid": [["md"]]}), "report.formats"),
    (_set("metrics.auc", {"grid": [{}]}), "metrics.auc"),
    (_set("defenses.l2[0].coefficient", {"grid": [math.nan]}),
     "defenses.l2[0].coefficient.grid"),
    (_set("defenses.l2[0].coefficient", {"grid": [0.1, math.inf]}),
     "defenses.l2[0].coefficient.grid"),
    (_set("defenses.l2[0].coefficient", {"grid": ["x"]}), "defenses.l2[0].coefficient"),
    (_set("defenses.l2[0].coefficient", {"grid": {"": 0.1}}), "defenses.l2[0].coefficient"),
    (_set("defenses.l2[0].defense", {"grid": ["weight_decay"]}), "defenses.l2[0].defense"),
    (_set("defenses.l2", [{"grid": [1]}]), "defenses.l2[0]"),
    (_set("defenses.pgd[0].attack_options", {"steps": {"grid": ["x"]}}),
     "defenses.pgd[0].attack_options.steps"),
    (_set("attacks[0].epsilons", {"grid": [[0.1]]}), "attacks[0].epsilons"),
    (_set("attacks[1].steps", {"grid": [5, "x"]}), "attacks[1].steps.grid"),
    (_set("attacks[1].steps", {"grid": [5, 0.5]}), "attacks[1].steps"),
    (_set("attacks[1].source", {"grid": ["mlp/none"]}), "attacks[1].source"),
    (_set("attacks[1].attack", {"grid": ["foolbox.LinfPGD"]}), "attacks[1].attack"),
    (_all(_set("attacks[1].name", "a" * 60), _set("attacks[1].steps", {"grid": [5]})),
     "attacks[1].steps"),
    # model = "import:..." (without the mlp's hidden option)
    (_imported("import:no_colon"), "models[0].model"),
    (_imported("import:"), "models[0].model"),
    (_imported("import:a.b:1x"), "models[0].model"),
    (_all(_imported("import:a.b:f"), _set("models[0].target", "a.b:f")), "models[0].target"),
    (_all(_imported("import:a.b:f"), _set("models[0].kwargs", {"x": math.nan})),
     "models[0].kwargs"),
]



@pytest.mark.parametrize("mutate, key", CASES, ids=[f"{k}-{i}" for i, (_, k) in
                                                     enumerate(CASES)])
def test_invalid_case_is_one_line_naming_the_key(tmp_path, write, capsys, mutate, key):
    doc = base(tmp_path)
    mutate(doc)
    check_invalid(write(doc), capsys, key)


def test_an_experiment_named_dotdot_without_output(tmp_path, write, capsys):
    doc = base(tmp_path)
    del doc["experiment"]["output"]
    doc["experiment"]["name"] = ".."
    check_invalid(write(doc), capsys, "experiment.name")


def test_output_or_model_cache_naming_a_file(tmp_path, write, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for key in ("output", "model_cache"):
        doc = base(tmp_path)
        doc["experiment"][key] = str(afile)
        check_invalid(write(doc), capsys, f"experiment.{key}")
        doc["experiment"][key] = str(afile / "below")
        check_invalid(write(doc), capsys, f"experiment.{key}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_output_in_a_read_only_directory(tmp_path, write, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        doc = base(tmp_path)
        doc["experiment"]["output"] = str(locked / "run")
        check_invalid(write(doc), capsys, "experiment.output")
    finally:
        locked.chmod(0o700)


VALID = [
    _set("experiment.device", "mps"),  # availability is checked when a run starts
    _set("experiment.device", "cuda:3"),
    _set("experiment.threads", 2),
    _set("experiment.unit_timeout", 0.5),
    _set("attacks[0].epsilons", {"start": 0, "stop": 1, "num": 10_000}),
    _set("attacks[2].epsilons", [0, 1]),
    _set("attacks[1].examples", 0),
    _set("report.eps", ["8/255"]),
    _set("report.reporters", ["summary", "provenance"]),
    _set("models[0].name", "a-b.c_d+e"),
    _set("models[0].name", "m" * 64),
    _set("training.lr_milestones", []),
    lambda doc: (_set("defenses.pgd[0].attack", "torchattacks.FGSM")(doc),
                 _set("defenses.pgd[0].attack_options", {})(doc)),
    _set("defenses.pgd[0].attack_options", {}),
    _set("metrics.auc", {}),
    _set("models[0].hidden", {"grid": [[8], [16, 16]]}),
    _set("models[0].hidden", {"grid": {"narrow": [4], "wide": [32]}}),
    _set("models[0].training", {"lr": {"grid": [0.1, 0.01]}}),
    _set("defenses.l2[0].coefficient", {"grid": [1e-4, 1e-3, 1e-2]}),
    _set("defenses.pgd[0].attack_options", {"steps": {"grid": [3, 5]}, "alpha": 0.04}),
    _set("attacks[1].steps", {"grid": [5, 10]}),
    _all(_set("models[0].defenses", ["l2"]),
         _set("defenses.l2[0].coefficient", {"grid": [0.1, 0.2]})),
    _set("models[0].hidden", {"grid": [[i] for i in range(1, 1001)]}),
    _imported("import:torch.nn:Identity"),
    _imported("import:my_models.py:build"),  # imported when the model is built
]


@pytest.mark.parametrize("mutate", VALID)
def test_valid_variants_pass(tmp_path, write, capsys, mutate):
    doc = base(tmp_path)
    mutate(doc)
    code, lines = validate(write(doc), capsys)
    assert code == 0, lines


# ------------------------------------------------------------------ command-line overrides

OVERRIDE_CASES = [
    # (-o text, key named in the error)
    ("training.lr=nan", "training.lr"),
    ("training.lr=-inf", "training.lr"),
    ("training.lr=[1]", "training.lr"),
    ("training.epochs=1.5", "training.epochs"),
    ("training.epochs={ grid = [1, 2] }", "training.epochs"),
    ("experiment.seeds=[0, 0]", "experiment.seeds"),
    ("experiment.seeds=0", "experiment.seeds"),
    ("experiment.name=a--b", "experiment.name"),
    ("experiment.output=", "experiment.output"),
    ("experiment.device=gpu", "experiment.device"),
    ("experiment.nme=x", "experiment.nme"),
    ("models[0].hidden=[nan]", "models[0].hidden"),
    ("models[0].hidden={ grid = [] }", "models[0].hidden.grid"),
    ("models[0].hidden={ grid = [[8], [0]] }", "models[0].hidden"),
    ("models[0].model=mpl", "models[0].model"),
    ("models[1].hidden=[8]", "models[1].hidden"),
    ("models[0].hidden.x=1", "models[0].hidden.x"),
    ("models.mlp.hidden=[8]", "models.mlp.hidden"),
    ("defenses.l2[0].coefficient=inf", "defenses.l2[0].coefficient"),
    ("defenses.l2[3].coefficient=1", "defenses.l2[3].coefficient"),
    ('defenses."l2"[0].coefficient={ grid = [0.1, "x"] }', "defenses.l2[0].coefficient.grid"),
    ("attacks[1].steps=many", "attacks[1].steps"),
    ("attacks[0].epsilons=[]", "attacks[0].epsilons"),
    ("attacks[0].epsilons.step=1e-9", "attacks[0].epsilons.step"),
    ("attacks[0].epsilons.num=3", "attacks[0].epsilons"),
    ("data.dataset=digts", "data.dataset"),
    ("metrics.use=[\"auk\"]", "metrics.use[0]"),
    ("report.formats=pdf", "report.formats"),
]


@pytest.mark.parametrize("override, key", OVERRIDE_CASES,
                         ids=[o for o, _ in OVERRIDE_CASES])
def test_an_invalid_override_is_one_line_naming_key_and_override(tmp_path, write, capsys,
                                                                 override, key):
    path = write(base(tmp_path))
    capsys.readouterr()
    with _alarm(CASE_SECONDS):
        code = main(["validate", str(path), "-o", override])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"robench: error: {path}: {key}"), lines
    assert lines[0].endswith(f"(from -o {override})"), lines


@pytest.mark.parametrize("override", ["", "=", "x", "[0]=1", "a..b=1", "a[-1]=1", 'a"b=1',
                                      "a b=1", "a.=1", "\0=1"])
def test_a_malformed_override_names_the_flag(tmp_path, write, capsys, override):
    path = write(base(tmp_path))
    capsys.readouterr()
    code = main(["validate", str(path), "-o", override])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("robench: error: -o: "), lines


# ------------------------------------------------------------------ files that are not TOML

@pytest.mark.parametrize("content", [
    "# caf\u00e9\n".encode("latin-1") + to_toml(BASE).encode(),
    to_toml(BASE).encode("utf-16"),
    bytes(range(256)) * 4,
    b"a = " + b"[" * 5000 + b"]" * 5000,
    b"a = " + b"{ b = " * 3000 + b"1" + b" }" * 3000,
    b"[data\n",
    b"",
    b"\0\0\0",
], ids=["latin1", "utf16", "binary", "deep-arrays", "deep-tables", "broken", "empty", "nul"])
def test_a_file_that_is_not_a_valid_toml_experiment(tmp_path, capsys, content):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    code, lines = validate(path, capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"robench: error: {path}"), lines


def test_deep_nesting_inside_an_option(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    deep = "[" * 400 + "1" + "]" * 400
    path.write_text(to_toml(base(tmp_path)).replace("hidden = [8]", f"hidden = {deep}"))
    code, lines = validate(path, capsys)
    assert code == 2 and len(lines) == 1 and "models[0]" in lines[0], lines


def test_a_directory_as_the_experiment_file(tmp_path, capsys):
    code, lines = validate(tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines


# ------------------------------------------------------------------ every option of every component

def _bad_values(tp) -> list:
    """Values no reading of the annotation ``tp`` can accept (TOML has no null)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _bad_values(inner[0])
        common = [math.nan]
        if str not in inner:
            common += [[{}]]
        return common
    if tp is typing.Any:
        return [math.nan, [math.inf]]
    if tp is bool:
        return [1, "yes"]
    if tp is int:
        return ["x", 1.5, math.nan, True]
    if tp is float:
        return ["x", math.nan, math.inf, -math.inf, "1e400", [0.5], True]
    if tp is str:
        return [1, ["a"]]
    if origin is typing.Literal:
        return ["no-such-choice", 3]
    if origin in (tuple, list):
        item = args[0] if args else typing.Any
        return ["x", [bad for bad in _bad_values(item)[:1]]]
    if origin is dict or tp is dict:
        return ["x", {"k": math.nan}]
    return []


LIBRARY_ATTACKS = ("torchattacks.PGD", "torchattacks.CW", "foolbox.L2CarliniWagnerAttack",
                   "foolbox.LinfDeepFoolAttack", "art.ProjectedGradientDescent",
                   "art.FastGradientMethod", "art.CarliniL2Method")
"""Catalogued library attacks whose options the corpus also covers."""


def _attack_site(name):
    def setup(doc):
        doc["attacks"][1] = {"name": "pgd", "attack": name, "epsilons": [0.1]}
    return setup


def _metric_site(name):
    def setup(doc):
        doc["metrics"][name] = {}
    return setup


def _option_cases():
    """(where, option, bad value, setup) for every option of the components used."""
    registry = build_registry(autoload=False)
    sites = [
        ("models[0]", registry.get("model", "mlp"), ("name", "model", "training",
                                                      "defenses"), None),
        ("defenses.l2[0]", registry.get("defense", "weight_decay"), ("defense",), None),
        ("defenses.pgd[0]", registry.get("defense", "adversarial_training"), ("defense",),
         None),
        ("attacks[0]", registry.get("attack", "torchattacks.FGSM"), (), None),
        ("attacks[1]", registry.get("attack", "foolbox.LinfPGD"), (), None),
        ("attacks[2]", registry.get("attack", "pixel_swap"), (), None),
        ("data", registry.get("dataset", "digits"), ("dataset",), None),
    ]
    sites += [("attacks[1]", registry.get("attack", name), (), _attack_site(name))
              for name in LIBRARY_ATTACKS]
    sites += [(f"metrics.{name}", registry.get("metric", name), (), _metric_site(name))
              for name in BASE["metrics"]["use"]]
    cases = []
    for where, cls, host, setup in sites:
        for name, tp in typing.get_type_hints(cls.Options).items():
            if name in host:
                continue
            for i, value in enumerate(_bad_values(tp)):
                cases.append(pytest.param(where, name, value, setup,
                                          id=f"{cls.name}:{where}.{name}-{i}"))
    for name, tp in typing.get_type_hints(__import__("robench.config").config.TrainingSpec
                                          ).items():
        for i, value in enumerate(_bad_values(tp)):
            cases.append(pytest.param("training", name, value, None,
                                      id=f"training.{name}-{i}"))
    return cases


OPTION_CASES = _option_cases()


def test_the_option_corpus_is_large():
    assert len(OPTION_CASES) + len(CASES) >= 300


@pytest.mark.parametrize("where, name, value, setup", OPTION_CASES)
def test_every_option_refuses_wrong_types_and_non_finite_numbers(tmp_path, write, capsys,
                                                                  where, name, value, setup):
    doc = base(tmp_path)
    if setup:
        setup(doc)
    _set(f"{where}.{name}", value)(doc)
    check_invalid(write(doc), capsys, f"{where}.{name}")


# ------------------------------------------------------------------ properties

SETTINGS = settings(max_examples=40, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _label_ok(label: str) -> bool:
    """The label rule: a file-name-safe word, no id separator, not only dots, short."""
    return (re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", label) is not None and "--" not in label
            and label.strip(".") != "")


@SETTINGS
@given(label=st.one_of(st.text(alphabet="ab-./\\+_ \0", min_size=0, max_size=8),
                       st.text(min_size=60, max_size=70, alphabet="ab.-")))
def test_property_labels(tmp_path, write, capsys, label):
    doc = base(tmp_path)
    doc["models"][0]["name"] = label
    doc["models"][0]["model"] = "mlp"
    code, lines = validate(write(doc), capsys)
    if _label_ok(label):
        assert code == 0, lines
    else:
        assert code == 2 and len(lines) == 1 and "models[0].name: " in lines[0], lines


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5),
                    st.sampled_from(["1/255", "1e400", "-1/2", "x", "0"]))


def _number(value) -> float | None:
    """A budget as the spec reads it: a number or a fraction string, finite."""
    from fractions import Fraction

    if isinstance(value, str):
        try:
            value = Fraction(value)
        except ValueError:
            return None
        if abs(value) > 1e300:
            return None
    value = float(value)
    return value if math.isfinite(value) else None


@SETTINGS
@given(budgets=st.lists(NUMBERS, min_size=0, max_size=5))
def test_property_budget_lists(tmp_path, write, capsys, budgets):
    doc = base(tmp_path)
    doc["attacks"][2]["epsilons"] = budgets  # pixel_swap: an L0 attack, budgets <= 1
    parsed = [_number(b) for b in budgets]
    ok = (bool(parsed) and None not in parsed and all(0 <= b <= 1 for b in parsed)
          and all(b > a for a, b in zip(parsed, parsed[1:])))
    code, lines = validate(write(doc), capsys)
    if ok:
        assert code == 0, (budgets, lines)
    else:
        assert code == 2 and len(lines) == 1 and "attacks[2].epsilons" in lines[0], lines


@SETTINGS
@given(start=NUMBERS, stop=NUMBERS, num=st.one_of(st.integers(-2, 20_000),
                                                   st.floats(0, 10)))
def test_property_budget_ranges(tmp_path, write, capsys, start, stop, num):
    doc = base(tmp_path)
    doc["attacks"][0]["epsilons"] = {"start": start, "stop": stop, "num": num}
    a, b = _number(start), _number(stop)
    ok = (a is not None and b is not None and 0 <= a <= b and isinstance(num, int)
          and 1 <= num <= 10_000 and (num == 1 or b > a))
    code, lines = validate(write(doc), capsys)
    if ok:
        assert code == 0, (start, stop, num, lines)
    else:
        assert code == 2 and len(lines) == 1 and "attacks[0].epsilons" in lines[0], lines


@SETTINGS
@given(lr=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3)))
def test_property_learning_rate(tmp_path, write, capsys, lr):
    doc = base(tmp_path)
    doc["training"]["lr"] = lr
    code, lines = validate(write(doc), capsys)
    if math.isfinite(lr) and lr > 0:
        assert code == 0, lines
    else:
        assert code == 2 and len(lines) == 1 and "training.lr: " in lines[0], lines


@SETTINGS
@given(values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                 st.integers(-3, 10**6)), min_size=0, max_size=6))
def test_property_coefficient_grids(tmp_path, write, capsys, values):
    """A grid of weight decay coefficients: one stack per value, labelled
    ``l2_coefficient_<value as Python writes it>``, when the values are distinct finite
    non-negative numbers; otherwise one line naming the coefficient."""
    doc = base(tmp_path)
    doc["defenses"]["l2"][0]["coefficient"] = {"grid": values}
    doc["models"][0]["defenses"] = ["l2"]
    texts = [repr(float(v)) if isinstance(v, float) else str(v) for v in values]
    ok = (bool(values) and all(math.isfinite(v) and v >= 0 for v in values)
          and len(set(texts)) == len(texts))
    code, lines = validate(write(doc), capsys)
    if ok:
        assert code == 0, (values, lines)
        main(["run", str(write(doc)), "--dry-run"])
        cells = [line.split()[1] for line in capsys.readouterr().out.splitlines()
                 if line.startswith("  cell ")]
        assert cells == [f"mlp--l2_coefficient_{t}--s{s}" for t in texts for s in (0, 1)]
    else:
        assert code == 2 and len(lines) == 1, (values, lines)
        assert "defenses.l2[0].coefficient" in lines[0], lines
