"""Experiment files: parsing, sweeps, and one-line errors naming file, key and line."""

from __future__ import annotations

import pytest
from conftest import SMOKE

from robench import ConfigError
from robench.config import load_experiment


def test_smoke_file_parses_into_specs(write_toml, registry):
    spec = load_experiment(write_toml(SMOKE), registry=registry)
    assert spec.name == "smoke" and spec.seeds == (0,)
    assert [s.label for s in spec.defenses] == ["none", "l2"]
    assert spec.defenses[1].defenses[0].options.coefficient == 0.01
    (attack,) = spec.attacks
    assert attack.epsilons == pytest.approx((0, 0.1, 0.2, 0.3, 0.4, 0.5))
    assert attack.component.options.repeats == 2
    assert spec.models[0].training.epochs == 3
    assert spec.models[0].component.options.hidden == (16,)


@pytest.mark.parametrize("sweep, expected", [
    ('["1/255", "2/255", 0.5]', (1 / 255, 2 / 255, 0.5)),
    ('{ start = "0/255", stop = "8/255", step = "2/255" }',
     tuple(i / 255 for i in (0, 2, 4, 6, 8))),
    ("{ start = 0, stop = 1, num = 3 }", (0, 0.5, 1)),
])
def test_epsilon_sweeps(write_toml, registry, sweep, expected):
    text = SMOKE.replace("epsilons = { start = 0, stop = 0.5, num = 6 }", f"epsilons = {sweep}")
    spec = load_experiment(write_toml(text), registry=registry)
    assert spec.attacks[0].epsilons == pytest.approx(expected)


def test_model_training_override(write_toml, registry):
    text = SMOKE.replace('hidden = [16]', 'hidden = [16]\ntraining = { epochs = 7 }')
    spec = load_experiment(write_toml(text), registry=registry)
    assert spec.models[0].training.epochs == 7 and spec.models[0].training.lr == 0.01


BAD = [
    # (old, new, key path in the message, words in the message, line)
    ('[report]', '[reports]', "reports", "unknown key (did you mean 'report'?)", None),
    ("repeats = 2", "repeat = 2", "attacks[0].repeat",
     "unknown option (did you mean 'repeats'?)", 27),
    ('attack = "test.sign_noise"', 'attack = "test.sign_nois"', "attacks[0].attack",
     "unknown attack 'test.sign_nois' (did you mean 'test.sign_noise'?)", 25),
    ("epsilons = { start = 0, stop = 0.5, num = 6 }", 'epsilons = ["8/255", "x"]',
     "attacks[0].epsilons[1]", "expected a number or a fraction such as '8/255', got 'x'", 26),
    ("epsilons = { start = 0, stop = 0.5, num = 6 }", "epsilons = [0.2, 0.1]",
     "attacks[0].epsilons", "strictly increasing", 26),
    ("epochs = 3", 'epochs = "three"', "training.epochs", "expected an integer, got 'three'", 11),
    ("lr = 0.01", "lr = -1.0", "training.lr", "lr must be positive", 12),
    ('dataset = "test.blobs"', 'dataset = "test.blob"', "data.dataset",
     "did you mean 'test.blobs'", 8),
    ('hidden = [16]', 'hidden = [0]', "models[0].hidden",
     "hidden layer widths must be positive", 17),
    ("coefficient = 0.01", 'coefficent = 0.01', "defenses.l2[0].coefficent",
     "did you mean 'coefficient'", 21),
]


@pytest.mark.parametrize("old, new, key, words, line", BAD)
def test_bad_input_gives_file_key_and_line(write_toml, registry, old, new, key, words, line):
    assert old in SMOKE
    path = write_toml(SMOKE.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_experiment(path, registry=registry)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert f"{key}: " in message and words in message, message
    if line is not None:
        assert info.value.line == line, message


def test_missing_file_and_invalid_toml(tmp_path, registry):
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "nope.toml", registry=registry)
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML: .*line 1"):
        load_experiment(bad, registry=registry)


def test_plugin_option_shadowed_by_a_host_key_is_refused(write_toml):
    import dataclasses
    import types

    import robench
    from robench.plugins import build_registry

    @dataclasses.dataclass(frozen=True)
    class ClashOptions:
        samples: int = 10  # clashes with the host's [[attacks]] samples key

    class Clashing(robench.Attack):
        """An attack whose option can never be set from a file."""
        name = "test.clashing"
        Options = ClashOptions

    plugin = types.ModuleType("clashing_plugin")
    plugin.robench_register_attacks = robench.hookimpl(lambda register: register(Clashing))
    registry = build_registry(autoload=False, plugins=[plugin])
    text = SMOKE.replace('"test.sign_noise"', '"test.clashing"').replace("repeats = 2", "")
    text = text.replace('dataset = "test.blobs"', 'dataset = "digits"')
    text = text.replace('use = ["test.row_count"]', "use = []")
    with pytest.raises(ConfigError, match=r"attacks\[0\].attack: attack 'test.clashing' has "
                                          r"option\(s\) \['samples'\] that the host's keys"):
        load_experiment(write_toml(text), registry=registry)


def test_report_section_parses_budgets_and_reporters(write_toml, registry):
    text = SMOKE.replace("formats = []", 'formats = ["md"]\neps = ["8/255", 0.25]\n'
                                         'reporters = ["summary"]')
    spec = load_experiment(write_toml(text), registry=registry)
    assert spec.report.formats == spec.report_formats == ("md",)
    assert spec.report.eps == pytest.approx((8 / 255, 0.25))
    assert spec.report.reporters == ("summary",)
    default = load_experiment(write_toml(SMOKE), registry=registry).report
    assert (default.eps, default.reporters) == (None, None)


def test_experiment_threads_timeout_and_executor_options(write_toml, registry):
    text = SMOKE.replace('device = "cpu"', 'device = "cpu"\nthreads = 2\nunit_timeout = 1.5')
    spec = load_experiment(write_toml(text), registry=registry)
    assert (spec.threads, spec.unit_timeout) == (2, 1.5)
    bad = SMOKE.replace('device = "cpu"', 'device = "cpu"\nexecutor_options = { workers = 2 }')
    with pytest.raises(ConfigError, match=r"experiment\.executor_options\.workers: executor "
                                          r"'local': unknown option"):
        load_experiment(write_toml(bad), registry=registry)


IMPORTED = """
    [data]
    dataset = "digits"

    [[models]]
    name = "user"
    model = "{model}"
    {extra}kwargs = {{ classes = 10 }}
    mean = [0.5]
    std = [0.25]

    [[attacks]]
    attack = "torchattacks.FGSM"
    epsilons = [0.1]
"""
USER_FILE = """
from torch import nn


def linear(inputs=64, classes=3):
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, classes))
"""


def test_import_shorthand_is_the_import_model_with_its_target(write_toml, registry, tmp_path):
    from robench import DataInfo
    from robench.runner import plan

    factory = tmp_path / "user_models.py"
    factory.write_text(USER_FILE)
    short = load_experiment(write_toml(IMPORTED.format(model=f"import:{factory}:linear",
                                                       extra="")), registry=registry)
    long = load_experiment(write_toml(IMPORTED.format(model="import",
                                                      extra=f'target = "{factory}:linear"\n    '),
                                      "long.toml"), registry=registry)
    (model,) = short.models
    assert (model.component.name, model.component.options.target) == ("import",
                                                                       f"{factory}:linear")
    assert model.component.options.kwargs == {"classes": 10}
    assert model.component.options.mean == (0.5,) and model.component.options.std == (0.25,)
    assert [c.key for c in plan(short, registry)[0]] == [c.key for c in plan(long, registry)[0]]
    import torch

    net = model.component.create(registry).build(DataInfo("digits", (1, 8, 8), 10))
    x = torch.rand(3, 1, 8, 8)
    linear = net.net[1]  # the factory's Linear, behind the in-model normalisation
    assert linear.out_features == 10  # kwargs reached the factory
    expected = ((x - 0.5) / 0.25).flatten(1) @ linear.weight.T + linear.bias
    assert torch.allclose(net(x), expected, atol=1e-6)


@pytest.mark.parametrize("model, extra, key, words", [
    ("import:nocolon", "", "models[0].model", "target must be 'package.module:factory'"),
    ("import:", "", "models[0].model", "target must be"),
    ("import:a.b:f", 'target = "a.b:f"\n    ', "models[0].target", "the target is given twice"),
    ("import:a.b:f", 'checkpoint = "missing.pt"\n    ', "models[0].checkpoint", "not found"),
])
def test_import_shorthand_errors(write_toml, capsys, model, extra, key, words):
    from robench.cli import main

    path = write_toml(IMPORTED.format(model=model, extra=extra))
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and f" {key}: " in lines[0] and words in lines[0], lines


def test_on_version_change_is_recompute_or_keep(write_toml, registry):
    assert load_experiment(write_toml(SMOKE), registry=registry).on_version_change == \
        "recompute"
    keep = SMOKE.replace('device = "cpu"', 'device = "cpu"\non_version_change = "keep"')
    assert load_experiment(write_toml(keep), registry=registry).on_version_change == "keep"
    with pytest.raises(ConfigError, match=r"experiment\.on_version_change: unknown policy "
                                          r"'kep' \(did you mean 'keep'\?\); valid: "
                                          r"recompute, keep"):
        load_experiment(write_toml(keep.replace('"keep"', '"kep"')), registry=registry)
    with pytest.raises(ConfigError, match=r"experiment\.on_version_change: expected a "
                                          r"string, got 1"):
        load_experiment(write_toml(keep.replace('"keep"', "1")), registry=registry)
