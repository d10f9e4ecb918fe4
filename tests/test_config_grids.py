"""Grids in experiment files: ``OPTION = { grid = [...] }`` expands a model, a defense
stack or an attack into one per value (cross-products for several grids), with labels
derived as documented in README.md; every misuse is one line naming the key (exit 2)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from conftest import SMOKE

from robench import ConfigError
from robench.cli import main
from robench.config import load_experiment, parse_experiment
from robench.runner import plan

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SMOKE = textwrap.dedent(SMOKE)


BUILTIN_ONLY = [('dataset = "test.blobs"', 'dataset = "digits"'),
                ('attack = "test.sign_noise"', 'attack = "torchattacks.FGSM"'),
                ("repeats = 2\n", ""), ('use = ["test.row_count"]', "use = []")]
"""Edits of the smoke file for the command line, which sees the built-in plugins only."""


def smoke(*edits: tuple[str, str], base: str = SMOKE) -> str:
    text = base
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_a_defense_grid_gives_one_stack_per_value(write_toml, registry):
    text = smoke(("coefficient = 0.01", "coefficient = { grid = [1e-4, 0.001, 0.01] }"))
    spec = load_experiment(write_toml(text), registry=registry)
    assert [s.label for s in spec.defenses] == [
        "none", "l2_coefficient_0.0001", "l2_coefficient_0.001", "l2_coefficient_0.01"]
    assert [s.defenses[0].options.coefficient for s in spec.defenses[1:]] == [1e-4, 1e-3, 1e-2]
    cells, units = plan(spec, registry)
    assert len(cells) == 1 * 4 * 1 and len(units) == len(cells) * 1  # models x stacks x seeds


def test_several_grids_make_the_cross_product_first_grid_slowest(write_toml, registry):
    text = smoke(('hidden = [16]', 'hidden = { grid = [[8], [16, 16]] }\n'
                                   'training = { lr = { grid = [0.1, 0.01, 0.001] } }'),
                 ("seeds = [0]", "seeds = [0, 1]"))
    spec = load_experiment(write_toml(text), registry=registry)
    expected = [(h, lr) for h in ((8,), (16, 16)) for lr in (0.1, 0.01, 0.001)]
    assert [(m.component.options.hidden, m.training.lr) for m in spec.models] == expected
    assert [m.label for m in spec.models] == [
        f"mlp_hidden_{'x'.join(map(str, h))}_lr_{lr!r}" for h, lr in expected]
    assert all(m.component.name == "mlp" for m in spec.models)  # model defaults to the label
    assert all(m.training.epochs == 3 for m in spec.models)    # [training] still applies
    cells, _ = plan(spec, registry)
    assert len(cells) == 6 * 2 * 2  # models x stacks x seeds


def test_grids_in_several_entries_of_one_stack_cross(write_toml, registry):
    text = smoke(('l2 = [{ defense = "weight_decay", coefficient = 0.01 }]',
                  'l2 = [{ defense = "weight_decay", coefficient = { grid = [0.1, 0.2] } },\n'
                  '      { defense = "weight_decay", norm = "l1", '
                  'coefficient = { grid = { small = 0.001, big = 0.01 } } }]'))
    spec = load_experiment(write_toml(text), registry=registry)
    stacks = {s.label: [d.options.coefficient for d in s.defenses] for s in spec.defenses[1:]}
    assert stacks == {f"l2_coefficient_{a!r}_{name}": [a, b]
                      for a in (0.1, 0.2) for name, b in (("small", 0.001), ("big", 0.01))}


def test_attack_grids_and_named_values(write_toml, registry):
    text = smoke(('name = "noise"\n', ""),
                 ("repeats = 2", 'repeats = { grid = { once = 1, thrice = 3 } }\n'
                                 'examples = { grid = [0, 2] }'))
    spec = load_experiment(write_toml(text), registry=registry)
    assert [(a.label, a.component.options.repeats, a.examples)
            for a in spec.attacks] == [("test.sign_noise_once_examples_0", 1, 0),
                                       ("test.sign_noise_once_examples_2", 1, 2),
                                       ("test.sign_noise_thrice_examples_0", 3, 0),
                                       ("test.sign_noise_thrice_examples_2", 3, 2)]
    assert len(plan(spec, registry)[1]) == 2 * 4  # cells x attacks


def test_expansions_plan_the_cells_of_the_same_file_written_out(write_toml, registry):
    grid = load_experiment(write_toml(smoke(
        ("coefficient = 0.01", "coefficient = { grid = [0.01, 0.5] }"),
        ('hidden = [16]', 'hidden = { grid = [[16], [4]] }'))), registry=registry)
    by_hand = load_experiment(write_toml(smoke(
        ('l2 = [{ defense = "weight_decay", coefficient = 0.01 }]',
         '"l2_coefficient_0.01" = [{ defense = "weight_decay", coefficient = 0.01 }]\n'
         '"l2_coefficient_0.5" = [{ defense = "weight_decay", coefficient = 0.5 }]'),
        ('name = "mlp"\nhidden = [16]',
         'name = "mlp_hidden_16"\nmodel = "mlp"\nhidden = [16]\n\n'
         '[[models]]\nname = "mlp_hidden_4"\nmodel = "mlp"\nhidden = [4]')), "hand.toml"),
        registry=registry)
    assert ([(c.id, c.key) for c in plan(grid, registry)[0]]
            == [(c.id, c.key) for c in plan(by_hand, registry)[0]])


def test_a_model_restricted_to_a_grid_stack_gets_all_its_expansions(write_toml, registry):
    text = smoke(("coefficient = 0.01", "coefficient = { grid = [0.1, 0.2] }"),
                 ('hidden = [16]', 'hidden = [16]\ndefenses = ["l2"]'))
    spec = load_experiment(write_toml(text), registry=registry)
    assert spec.models[0].defenses == ("l2_coefficient_0.1", "l2_coefficient_0.2")
    assert len(plan(spec, registry)[0]) == 2


def test_the_recorded_config_keeps_the_grid_and_parses_to_the_same_spec(write_toml, registry):
    text = smoke(("coefficient = 0.01", "coefficient = { grid = [0.1, 0.2] }"))
    spec = load_experiment(write_toml(text), registry=registry)
    assert spec.raw["defenses"]["l2"][0]["coefficient"] == {"grid": [0.1, 0.2]}
    again = parse_experiment(spec.raw, registry=registry)
    assert [c.key for c in plan(again, registry)[0]] == [c.key for c in plan(spec, registry)[0]]


@pytest.mark.parametrize("name, scale, step", [("tilting", 6000, 0.1),
                                               ("tilting_small", 800, 1.0)])
def test_the_tilting_benchmarks_are_grids_of_lambda(name, scale, step, registry):
    """lambda = 10^a for a = -1..7: stack lambda_1e<a> with coefficient lambda / n (six
    significant digits), as the files spelled out stack by stack before."""
    spec = load_experiment(BENCHMARKS / f"{name}.toml", registry=registry, paths=False)
    count = round(8 / step) + 1
    expected = [(f"lambda_1e{-1 + i * step:.1f}", float(f"{10 ** (-1 + i * step) / scale:.6g}"))
                for i in range(count)]
    assert [(s.label, s.defenses[0].options.coefficient) for s in spec.defenses] == expected
    assert all(s.defenses[0].options.norm == "l2" for s in spec.defenses)
    assert len(plan(spec, registry)[0]) == count


# ------------------------------------------------------------------ errors

BAD = [
    # (old, new, key named in the message, words)
    ("coefficient = 0.01", "coefficient = { grid = [] }", "defenses.l2[0].coefficient.grid",
     "the grid is empty"),
    ("coefficient = 0.01", "coefficient = { grid = 0.1 }", "defenses.l2[0].coefficient.grid",
     "expected a non-empty list"),
    ("coefficient = 0.01", 'coefficient = { grid = [0.1, "1/2"] }',
     "defenses.l2[0].coefficient.grid", "one kind, got number, string"),
    ("coefficient = 0.01", "coefficient = { grid = [0.1, 0.1] }",
     "defenses.l2[0].coefficient.grid", "two values give the label part 'coefficient_0.1'"),
    ("coefficient = 0.01", 'coefficient = { grid = ["1/2", "1/4"] }',
     "defenses.l2[0].coefficient.grid", "label part 'coefficient_1/2' is unusable"),
    ("coefficient = 0.01", 'coefficient = { grid = { "a b" = 0.1 } }',
     "defenses.l2[0].coefficient.grid", "label part 'a b' is unusable"),
    ("coefficient = 0.01", 'coefficient = { grid = [{ a = 1 }] }',
     "defenses.l2[0].coefficient.grid", "no short form for a label"),
    ("coefficient = 0.01", 'coefficient = { grid = ["x", "y"] }',
     "defenses.l2[0].coefficient", "expected a number"),
    ('defense = "weight_decay"', 'defense = { grid = ["weight_decay"] }',
     "defenses.l2[0].defense", "'defense' cannot be a grid"),
    ('hidden = [16]', 'hidden = [{ grid = [16] }]', "models[0].hidden[0]",
     "cannot sit inside a list"),
    ('hidden = [16]', 'hidden = [16]\nmodel = { grid = ["mlp"] }', "models[0].model",
     "'model' cannot be a grid"),
    ('hidden = [16]', 'hidden = [16]\ndefenses = { grid = [["none"]] }', "models[0].defenses",
     "'defenses' cannot be a grid"),
    ('name = "noise"', 'name = { grid = ["a"] }', "attacks[0].name", "'name' cannot be a grid"),
    ("epsilons = { start = 0, stop = 0.5, num = 6 }", "epsilons = { grid = [[0.1]] }",
     "attacks[0].epsilons", "'epsilons' cannot be a grid"),
    ("epochs = 3", "epochs = { grid = [1, 2] }", "training.epochs",
     "grids are allowed in [[models]] entries, [defenses] stacks and [[attacks]]"),
    ('seeds = [0]', 'seeds = { grid = [[0]] }', "experiment.seeds", "grids are allowed in"),
    ('[data]', '[data]\nn = { grid = [1] }', "data.n",
     "grids are allowed in"),
    ('formats = []', 'formats = { grid = [[]] }', "report.formats", "grids are allowed in"),
    ('hidden = [16]', 'hidden = { grid = [[1], [2], [3], [4], [5], [6], [7], [8], [9], [10], '
                      '[11]] }\nmean = { grid = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] }\n'
                      'std = { grid = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] }',
     "models[0].hidden", "make 1,331 combinations; at most 1,000"),
    ("coefficient = 0.01 }]", 'coefficient = { grid = [0.5] } }]\n"l2_coefficient_0.5" = []',
     "defenses.l2", "'l2_coefficient_0.5' is used twice"),
    ('none = []\nl2 = [{ defense = "weight_decay", coefficient = 0.01 }]',
     '"l2_coefficient_0.5" = []\n'
     'l2 = [{ defense = "weight_decay", coefficient = { grid = [0.5] } }]',
     "defenses.l2", "'l2_coefficient_0.5' is used twice"),
    ('hidden = [16]', 'hidden = { grid = [[16], [0]] }', "models[0].hidden",
     "(in the grid expansion 'mlp_hidden_0')"),
]
BAD.append(('name = "mlp"\nhidden = [16]', f'name = "{"m" * 60}"\nhidden = {{ grid = [[16]] }}',
            "models[0].hidden", f"expanded label '{'m' * 60}_hidden_16' is unusable"))


@pytest.mark.parametrize("old, new, key, words", BAD)
def test_grid_errors_are_one_line_naming_the_key(write_toml, capsys, old, new, key, words):
    path = write_toml(smoke((old, new), base=smoke(*BUILTIN_ONLY)))
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"robench: error: {path}") and f" {key}: " in lines[0], err
    assert words in lines[0], err


def test_an_error_in_an_expansion_points_at_the_line_of_the_grid(write_toml, registry):
    text = smoke(('hidden = [16]', 'hidden = { grid = [[16], [0]] }'))
    path = write_toml(text)
    with pytest.raises(ConfigError) as info:
        load_experiment(path, registry=registry)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("hidden"))
    assert info.value.line == line and info.value.key == "models[0].hidden"


def test_a_later_entry_is_named_by_its_index_in_the_file(write_toml, capsys):
    text = smoke(('hidden = [16]', 'hidden = { grid = [[16], [8], [4]] }\n\n'
                                   '[[models]]\nname = "other"\nmodel = "mlp"\nhidden = [-1]'),
                 *BUILTIN_ONLY)
    path = write_toml(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert " models[1].hidden: " in err and "grid expansion" not in err, err


def test_the_readme_grid_example_gives_the_labels_it_names(write_toml, registry):
    readme = (BENCHMARKS.parent / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S)
                if "{ grid = [[256], [256, 256]] }" in b]
    spec = load_experiment(write_toml('[data]\ndataset = "digits"\n\n' + block), registry=registry)
    assert [m.label for m in spec.models] == [
        f"mlp_hidden_{h}_lr_{lr}" for h in ("256", "256x256") for lr in ("0.001", "0.01")]
    assert [s.label for s in spec.defenses] == [
        f"l2_coefficient_{c}" for c in ("0.0001", "0.001", "0.01")]
    assert [(a.label, a.component.options.alpha) for a in spec.attacks] == [
        (f"torchattacks.PGD_steps_{s}_{n}", a) for s in (10, 100)
        for n, a in (("small", 1 / 255), ("large", 2 / 255))]
