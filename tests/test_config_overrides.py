"""Overrides: ``robench run|validate FILE -o KEY=VALUE`` and ``robench.run(...,
overrides={...})`` change values of the file before validation; the values reach the
options and the recorded config (hence the cache keys), and every mistake is one line
naming the key and the override (exit 2)."""

from __future__ import annotations

import textwrap

import pytest
from conftest import SMOKE

from robench import ConfigError, api
from robench.cli import main
from robench.config import load_experiment
from robench.overrides import from_command_line, parse_key, parse_value
from robench.runner import plan

SMOKE = textwrap.dedent(SMOKE)
BUILTIN = (SMOKE.replace('"test.blobs"', '"digits"').replace('"test.sign_noise"', '"pixel_swap"')
           .replace("repeats = 2\n", "").replace('["test.row_count"]', "[]"))
"""The smoke file with built-in plugins only (the command line sees no test plugin)."""


@pytest.mark.parametrize("text, expected", [
    ("3", 3), ("1e-3", 1e-3), ("[0, 1]", [0, 1]), ('"cuda:0"', "cuda:0"), ("cuda:0", "cuda:0"),
    ("true", True), ("{ grid = [1, 2] }", {"grid": [1, 2]}), ("8/255", "8/255"), ("", ""),
    ("1\nx = 2", "1\nx = 2"), ("[[[", "[[["),
])
def test_values_are_toml_values_else_strings(text, expected):
    assert parse_value(text) == expected and type(parse_value(text)) is type(expected)


@pytest.mark.parametrize("key, parts", [
    ("training.epochs", ("training", "epochs")),
    ("models[0].hidden", ("models", 0, "hidden")),
    ("defenses.l2[0].coefficient", ("defenses", "l2", 0, "coefficient")),
    ('defenses."lambda_1e-1.0"[0].coefficient', ("defenses", "lambda_1e-1.0", 0, "coefficient")),
    ("attacks[12].attack_options.steps", ("attacks", 12, "attack_options", "steps")),
])
def test_key_paths(key, parts):
    assert parse_key(key) == parts


def test_overrides_reach_the_options_and_the_plan(write_toml, registry):
    path = write_toml(SMOKE)
    spec = load_experiment(path, registry=registry, overrides=[
        from_command_line(text) for text in (
            "training.epochs=7", "experiment.seeds=[0, 1, 2]", "models[0].hidden=[4, 5]",
            "defenses.l2[0].coefficient=0.5", "attacks[0].repeats=4",
            "attacks[0].epsilons={ start = 0, stop = 1, num = 3 }")])
    assert spec.models[0].training.epochs == 7 and spec.seeds == (0, 1, 2)
    assert spec.models[0].component.options.hidden == (4, 5)
    assert spec.defenses[1].defenses[0].options.coefficient == 0.5
    assert spec.attacks[0].component.options.repeats == 4
    assert spec.attacks[0].epsilons == (0, 0.5, 1)
    cells, units = plan(spec, registry)
    assert len(cells) == 1 * 2 * 3 and len(units) == len(cells)  # models x stacks x seeds


def test_a_later_override_of_the_same_key_wins(write_toml, registry):
    spec = load_experiment(write_toml(SMOKE), registry=registry,
                           overrides={"training.epochs": 1, "models[0].training": {"epochs": 2}})
    assert spec.models[0].training.epochs == 2
    spec = load_experiment(write_toml(SMOKE), registry=registry, overrides=[
        from_command_line("training.epochs=1"), from_command_line("training.epochs=5")])
    assert spec.models[0].training.epochs == 5


def test_an_override_may_create_a_table_and_set_a_grid(write_toml, registry):
    text = SMOKE.replace("[training]\nepochs = 3\nlr = 0.01\nbatch_size = 32\n", "")
    spec = load_experiment(write_toml(text), registry=registry, overrides={
        "training.epochs": 2, "defenses.l2[0].coefficient": {"grid": [0.1, 0.2, 0.3]}})
    assert spec.models[0].training.epochs == 2
    assert [s.label for s in spec.defenses] == ["none", "l2_coefficient_0.1",
                                                "l2_coefficient_0.2", "l2_coefficient_0.3"]


def test_the_recorded_config_and_the_cache_keys_see_the_override(write_toml, registry):
    """Overriding a value is the same as writing it into the file."""
    overridden = load_experiment(write_toml(SMOKE), registry=registry,
                                 overrides={"defenses.l2[0].coefficient": 0.5})
    edited = load_experiment(write_toml(SMOKE.replace("coefficient = 0.01", "coefficient = 0.5"),
                                        "edited.toml"), registry=registry)
    plain = load_experiment(write_toml(SMOKE, "plain.toml"), registry=registry)
    assert overridden.raw == edited.raw != plain.raw
    assert overridden.config_hash == edited.config_hash != plain.config_hash
    keys = [[c.key for c in plan(s, registry)[0]] for s in (overridden, edited, plain)]
    assert keys[0] == keys[1] and keys[0][1] != keys[2][1] and keys[0][0] == keys[2][0]


def test_the_python_api_runs_with_overrides_and_records_them(write_toml, registry, tmp_path):
    path = write_toml(SMOKE)
    run = api.run(path, out=tmp_path / "run", registry=registry, progress=False,
                  overrides={"training.epochs": 1, "attacks[0].epsilons": [0, 0.5]})
    assert run.record.experiment.config["training"]["epochs"] == 1
    assert sorted(run.results["epsilon"].unique()) == [0, 0.5]
    spec = load_experiment(path, registry=registry)
    assert spec.attacks[0].epsilons != (0, 0.5)  # the file itself is unchanged
    with pytest.raises(ConfigError, match=r"training\.epochs: expected an integer, got 'x' "
                                          r"\(from overrides\[\"training\.epochs\"\]\)"):
        api.run(spec, out=tmp_path / "run2", registry=registry, overrides={"training.epochs": "x"})


def test_dry_run_and_validate_take_overrides(write_toml, capsys):
    path = write_toml(BUILTIN)
    assert main(["run", str(path), "--dry-run", "-o", "experiment.seeds=[3, 4, 5]",
                 "--override", 'models[0].name="small"', "-o", "models[0].model=mlp"]) == 0
    out = capsys.readouterr().out
    assert "3 cells" not in out and "6 cells" in out and "cell small--l2--s5" in out, out
    assert main(["validate", str(path), "-o", "defenses.l2[0].coefficient={grid=[1,2,3]}"]) == 0
    assert "ok (4 cells, 4 attack sweeps)" in capsys.readouterr().out


BAD = [
    # (override, key named in the message, words)
    ("training.epochs=abc", "training.epochs", "expected an integer, got 'abc'"),
    ("training.epoch=3", "training.epoch", "did you mean 'epochs'"),
    ("models[0].hidden=[0]", "models[0].hidden", "hidden layer widths must be positive"),
    ("models[1].hidden=[4]", "models[1].hidden", "models has 1 entries"),
    ("models.mlp.hidden=[4]", "models.mlp.hidden", "models is not a table (entries are [N])"),
    ("training.epochs.x=1", "training.epochs.x", "training.epochs is not a table"),
    ("experiment[0]=1", "experiment[0]", "experiment is not an array of tables"),
    ("experiment.seeds={grid=[[0]]}", "experiment.seeds", "grids are allowed in"),
    ("defenses.l2[0].coefficient={grid=[]}", "defenses.l2[0].coefficient.grid", "empty"),
    ("attacks[0].epsilons=[0.2, 0.1]", "attacks[0].epsilons", "strictly increasing"),
    ("attacks[0].epsilons.stop=x", "attacks[0].epsilons.stop", "expected a number"),
    ("attacks[0].epsilons.stop=-1", "attacks[0].epsilons", "is below start"),
    ("attacks[0].epsilons.num=0", "attacks[0].epsilons.num", "expected a positive integer"),
]


@pytest.mark.parametrize("override, key, words", BAD)
def test_a_bad_override_is_one_line_naming_the_key_and_the_override(write_toml, capsys,
                                                                    override, key, words):
    path = write_toml(BUILTIN)
    for command in (["validate", str(path)], ["run", str(path), "--dry-run"]):
        code = main([*command, "-o", override])
        lines = capsys.readouterr().err.splitlines()
        assert code == 2 and len(lines) == 1, lines
        line = lines[0]
        assert line.startswith(f"robench: error: {path}: {key}: "), line  # no line number
        assert words in line and line.endswith(f"(from -o {override})"), line


@pytest.mark.parametrize("override", ["epochs", "=3", "a..b=1", "models[x].hidden=1",
                                      "a b=1", 'a."b=1'])
def test_a_malformed_override_is_one_line(write_toml, capsys, override):
    assert main(["validate", str(write_toml(BUILTIN)), "-o", override]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("robench: error: -o: expected "), lines


def test_validating_with_overrides_and_grids_imports_no_torch(write_toml):
    import subprocess
    import sys

    path = write_toml(BUILTIN)
    code = (
        "import sys, robench.cli as c\n"
        f"code = c.main(['validate', {str(path)!r}, '-o', 'models[0].hidden={{grid=[[4],[8]]}}',"
        " '-o', 'training.epochs=1'])\n"
        "heavy = [m for m in ('torch', 'foolbox', 'art', 'torchattacks', 'pandas') "
        "if m in sys.modules]\n"
        "print('RESULT', code, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "RESULT 0 []", (out.stdout, out.stderr)
