"""Nothing silently wrong: cache keys, attack isolation, live parts and failures.

The misbehaving components below are registered like any plugin; each test shows the
host refusing a wrong number (a failure with a clear message) or keeping the other work
exact (rows identical to a run without the misbehaving component).
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import pandas as pd
import pytest
import torch
from conftest import SMOKE

import robench
from robench import Attack, AttackResult, Metric, Reporter, api
from robench.config import load_experiment
from robench.errors import RobenchError
from robench.plugins import build_registry
from robench.runner import plan

KEY = ["cell", "attack", "epsilon", "sample"]


class InPlace(Attack):
    """Corrupts the inputs it is given (in place) and returns them unchanged otherwise."""

    name = "integrity.in_place"
    library = "integrity"
    sweeps_itself = True

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None):
        x.add_(10.0)
        y.fill_(0)
        return self.result(epsilons, adversarials=[x.clamp(*bounds) * 0 + 0.5
                                                   for _ in epsilons])


class WeightEditor(Attack):
    """Changes the model's weights (and returns the clean inputs)."""

    name = "integrity.weights"
    library = "integrity"
    sweeps_itself = True

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return self.result(epsilons, adversarials=[x.clone() for _ in epsilons])


class WrongBudgets(Attack):
    """Reports budgets ten times the requested ones (with perturbations that large)."""

    name = "integrity.wrong_eps"
    library = "integrity"
    sweeps_itself = True

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None):
        big = [10 * e for e in epsilons]
        return self.result(big, adversarials=[(x + e).clamp(*bounds) for e in big])


BAD_OUTPUTS = {"class99": (99, 0.0), "class-1": (-1, 0.0), "negative": (0, -1.0),
               "nan": (0, float("nan")), "inf": (0, float("inf"))}


@dataclasses.dataclass(frozen=True)
class PredictionOptions:
    output: str = "class99"


class Predictions(Attack):
    """A predictions-only attack reporting the (class, distance) named by ``output``."""

    name = "integrity.predictions"
    library = "integrity"
    sweeps_itself = True
    Options = PredictionOptions

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None):
        e, n = len(epsilons), len(x)
        pred, dist = BAD_OUTPUTS[self.options.output]
        return self.result(epsilons, predictions=torch.full((e, n), pred),
                           distances=torch.full((e, n), dist))


class ThirdParty(Attack):
    """Leaves the result's library unset: the class's library must label the rows."""

    name = "integrity.third_party"
    library = "someone-elses-library"
    sweeps_itself = True

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None):
        return AttackResult(epsilons=list(epsilons), adversarials=[x.clone() for _ in epsilons],
                            library=None)


class SourceProbe(Attack):
    """Records the sum of the first weight layer of the model it is given as its source
    (and of the model it attacks) in its details; returns the clean inputs."""

    name = "integrity.source_probe"
    library = "integrity"
    sweeps_itself = True

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None):
        def first(net):
            return float(next(p for p in net.parameters() if p.dim() >= 2).sum())

        return self.result(epsilons, adversarials=[x.clone() for _ in epsilons],
                           details={"source_sum": first(source_model),
                                    "model_sum": first(model)})


class Raising(Metric):
    """A metric over the results that always raises."""

    name = "integrity.raising"

    def from_results(self, results):
        raise ZeroDivisionError("this metric raises on purpose")


class RaisingPerCell(Metric):
    """A per-cell metric that always raises."""

    name = "integrity.raising_cell"

    def from_cell(self, cell):
        raise ZeroDivisionError("this per-cell metric raises on purpose")


class RaisingReporter(Reporter):
    """A reporter that always raises."""

    name = "integrity.raising_reporter"

    def sections(self, run):
        raise ZeroDivisionError("this reporter raises on purpose")


@robench.hookimpl
def robench_register_reporters(register):
    register(RaisingReporter)


@robench.hookimpl
def robench_register_attacks(register):
    for cls in (InPlace, WeightEditor, WrongBudgets, Predictions, ThirdParty, SourceProbe):
        register(cls)


@robench.hookimpl
def robench_register_metrics(register):
    register(Raising)
    register(RaisingPerCell)


@pytest.fixture(scope="module")
def reg():
    import plugin_fixtures

    return build_registry(autoload=False, plugins=[plugin_fixtures, sys.modules[__name__]])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def _experiment(tmp_path, cache, attacks: str = "", *, metrics: str = "test.row_count",
                defenses: str = "none = []", before: str = ""):
    """SMOKE with a shared model cache, only the given ``defenses`` and metric, and extra
    ``attacks`` after (or ``before``) the noise attack."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(SMOKE)
    text = text.replace('[[attacks]]\nname = "noise"',
                        textwrap.dedent(before) + '\n[[attacks]]\nname = "noise"')
    text = text.replace('device = "cpu"', f'device = "cpu"\nmodel_cache = "{cache}"')
    text = text.replace('none = []\nl2 = [{ defense = "weight_decay", coefficient = 0.01 }]',
                        defenses)
    text = text.replace('use = ["test.row_count"]', f'use = ["{metrics}"]')
    path = tmp_path / "exp.toml"
    path.write_text(text + textwrap.dedent(attacks))
    return path


def _rows(run, attack: str = "noise"):
    df = run.results
    return df[df["attack"] == attack].sort_values(KEY).reset_index(drop=True)


# ------------------------------------------------------------------ isolation


@pytest.mark.parametrize("attack", ["integrity.in_place", "integrity.weights"])
def test_a_misbehaving_attack_cannot_change_the_numbers_of_later_units(
        attack, tmp_path, cache, reg):
    """An attack that edits its inputs or the model's weights runs before the noise
    attack on the same model; the noise rows equal those of a run without it."""
    alone = api.run(_experiment(tmp_path / "alone", cache), out=tmp_path / "alone" / "run",
                    registry=reg, progress=False)
    path = _experiment(tmp_path, cache, before=f"""
    [[attacks]]
    name = "bad"
    attack = "{attack}"
    epsilons = [0.1]
    """)
    run = api.run(path, out=tmp_path / "run", registry=reg, progress=False)
    pd.testing.assert_frame_equal(_rows(run), _rows(alone))
    failures = run.failures()
    if attack == "integrity.weights":
        assert set(failures) == {"mlp--none--s0--bad"}
        assert "changed the model's state" in failures["mlp--none--s0--bad"]
        assert run.status == "failed"
    else:  # its own rows are judged against the true inputs: 0.5 is far off budget
        assert not failures
        bad_rows = _rows(run, "bad")
        assert not bad_rows["within_budget"].any()


def test_returned_budgets_must_be_the_requested_ones(tmp_path, cache, reg):
    path = _experiment(tmp_path, cache, """
    [[attacks]]
    name = "bad"
    attack = "integrity.wrong_eps"
    epsilons = [0, 0.1, 0.2]
    """)
    run = api.run(path, out=tmp_path / "run", registry=reg, progress=False)
    error = run.failures()["mlp--none--s0--bad"]
    assert "returned budgets [0.0, 1.0, 2.0]" in error and "[0.0, 0.1, 0.2]" in error
    assert set(run.results["attack"]) == {"noise"}


@pytest.mark.parametrize("output, message", [
    ("class99", "predicted class 99"), ("class-1", "predicted class -1"),
    ("negative", "distance -1.0"), ("nan", "distance nan"), ("inf", "distance inf"),
])
def test_predictions_only_attacks_are_checked(output, message, tmp_path, cache, reg):
    path = _experiment(tmp_path, cache, f"""
    [[attacks]]
    name = "bad"
    attack = "integrity.predictions"
    epsilons = [0.1]
    output = "{output}"
    """)
    run = api.run(path, out=tmp_path / "run", registry=reg, progress=False)
    assert message in run.failures()["mlp--none--s0--bad"]


def test_rows_name_the_attack_class_library_when_the_result_does_not(tmp_path, cache, reg):
    path = _experiment(tmp_path, cache, """
    [[attacks]]
    name = "other"
    attack = "integrity.third_party"
    epsilons = [0.1]
    """)
    run = api.run(path, out=tmp_path / "run", registry=reg, progress=False)
    assert set(_rows(run, "other")["library"]) == {"someone-elses-library"}
    assert run.record.attacks["other"].library == "someone-elses-library"


def test_transfer_attacks_get_the_source_cells_model(tmp_path, cache, reg):
    path = _experiment(tmp_path, cache, """
    [[attacks]]
    name = "transfer"
    attack = "integrity.source_probe"
    epsilons = [0.1]
    source = "mlp/l2"
    """, defenses='none = []\nl2 = [{ defense = "weight_decay", coefficient = 0.01 }]')
    run = api.run(path, out=tmp_path / "run", registry=reg, progress=False)
    assert run.status == "done", run.failures()
    layers = run.store.first_layers()
    for cell in ("mlp--none--s0", "mlp--l2--s0"):
        details = run.record.units[f"{cell}--transfer"].details
        assert details["source_sum"] == pytest.approx(float(layers["mlp--l2--s0"].sum()))
        assert details["model_sum"] == pytest.approx(float(layers[cell].sum()))


# ------------------------------------------------------------------ failures


@pytest.mark.parametrize("metric, key", [("integrity.raising", "metric:integrity.raising"),
                                         ("integrity.raising_cell",
                                          "metric:integrity.raising_cell@mlp--none--s0")])
def test_a_raising_metric_is_a_failure_of_the_run(metric, key, tmp_path, cache, reg):
    run = api.run(_experiment(tmp_path, cache, metrics=metric), out=tmp_path / "run",
                  registry=reg, progress=False)
    assert run.status == "failed"
    assert "raises on purpose" in run.failures()[key]
    assert len(run.results) == 6 * 200  # the units themselves are complete


def test_a_raising_reporter_is_a_failure_of_the_run(tmp_path, cache, reg):
    path = _experiment(tmp_path, cache)
    path.write_text(path.read_text().replace("formats = []", 'formats = ["md"]\n'
                                             'reporters = ["integrity.raising_reporter"]'))
    run = api.run(path, out=tmp_path / "run", registry=reg, progress=False)
    assert run.status == "failed"
    assert "raises on purpose" in run.failures()["reporter:integrity.raising_reporter"]
    assert api.load(run.path).failures() == run.failures()


# ------------------------------------------------------------------ parts


def test_removed_attack_parts_are_superseded(tmp_path, cache, reg):
    path = _experiment(tmp_path, cache, """
    [[attacks]]
    name = "other"
    attack = "integrity.third_party"
    epsilons = [0.1]
    """)
    out = tmp_path / "run"
    api.run(path, out=out, registry=reg, progress=False)
    path.write_text(path.read_text().split("[[attacks]]\nname = \"other\"")[0])
    run = api.run(path, out=out, registry=reg, progress=False)
    assert len(pd.read_parquet(out / "results")) == len(run.results) == 6 * 200
    assert [p.name.split(".")[0] for p in (out / "superseded").glob("*.parquet")] == [
        "mlp--none--s0--other"]


def test_a_part_replaced_by_another_units_file_is_refused_and_recomputed(
        tmp_path, cache, reg):
    path = _experiment(tmp_path, cache, defenses='none = []\nl2 = [{ defense = '
                       '"weight_decay", coefficient = 0.01 }]')
    out = tmp_path / "run"
    first = api.run(path, out=out, registry=reg, progress=False)
    original = first.results.sort_values(KEY).reset_index(drop=True)
    parts = out / "results"
    (parts / "mlp--l2--s0--noise.parquet").write_bytes(
        (parts / "mlp--none--s0--noise.parquet").read_bytes())
    with pytest.raises(RobenchError, match="mlp--l2--s0--noise.parquet: holds unit key"):
        api.load(out).results
    rerun = api.run(path, out=out, registry=reg, progress=False)
    pd.testing.assert_frame_equal(rerun.results.sort_values(KEY).reset_index(drop=True),
                                  original)


# ------------------------------------------------------------------ keys and ids


def _keys(path, reg):
    cells, units = plan(load_experiment(path, registry=reg), reg)
    return ({c.id: c.key for c in cells}, {u.id: u.key for u in units},
            {c.id: c.torch_seed for c in cells}, {u.id: u.attack_seed for u in units})


TWO_ATTACKS = """
[[attacks]]
name = "other"
attack = "integrity.third_party"
epsilons = [0.1]
"""


@pytest.mark.parametrize("edit, cells_change, units_change", [
    (("hidden = [16]", "hidden = [17]"), True, "all"),
    (("lr = 0.01", "lr = 0.02"), True, "all"),
    (("coefficient = 0.01", "coefficient = 0.02"), "l2", "l2"),
    (('dataset = "test.blobs"', 'dataset = "test.blobs"\nseparation = 0.6'), True, "all"),
    (('dataset = "test.blobs"', 'dataset = "test.blobs"\ntrain_subset = 150'), True, "all"),
    (('dataset = "test.blobs"', 'dataset = "test.blobs"\ntest_subset = 150'), False, "all"),
    (("repeats = 2", "repeats = 3"), False, "noise"),
    (("num = 6", "num = 7"), False, "noise"),
    (('epsilons = { start', 'samples = 100\nepsilons = { start'), False, "noise"),
])
def test_each_input_changes_exactly_the_keys_it_determines(edit, cells_change, units_change,
                                                           tmp_path, cache, reg):
    path = _experiment(tmp_path, cache, TWO_ATTACKS, defenses='none = []\nl2 = [{ defense = '
                       '"weight_decay", coefficient = 0.01 }]')
    before = _keys(path, reg)
    path.write_text(path.read_text().replace(*edit))
    after = _keys(path, reg)
    changed_cells = {c for c in before[0] if before[0][c] != after[0][c]}
    changed_units = {u for u in before[1] if before[1][u] != after[1][u]}
    expect_cells = {"l2": {"mlp--l2--s0"}, True: set(before[0]), False: set()}[cells_change]
    expect_units = {u for u in before[1] if units_change == "all" or units_change in u}
    assert changed_cells == expect_cells and changed_units == expect_units
    assert before[2:] == after[2:]  # seeds never move with the keys


def test_versions_and_checkpoint_contents_enter_the_keys_but_not_the_seeds(
        tmp_path, cache, reg, monkeypatch):
    from plugin_fixtures import Blobs, SignNoise

    import robench.runner

    path = _experiment(tmp_path, cache, TWO_ATTACKS)
    base = _keys(path, reg)
    monkeypatch.setattr(SignNoise, "version", "2.0")  # a new release of one attack
    attack_version = _keys(path, reg)
    assert attack_version[0] == base[0]
    assert {u for u in base[1] if base[1][u] != attack_version[1][u]} == {
        "mlp--none--s0--noise"}
    monkeypatch.undo()
    real = robench.runner._version
    monkeypatch.setattr(robench.runner, "_version",
                        lambda dist: "9.9" if dist == "someone-elses-library" else real(dist))
    library = _keys(path, reg)  # the library an attack wraps was upgraded
    assert library[0] == base[0]
    assert {u for u in base[1] if base[1][u] != library[1][u]} == {"mlp--none--s0--other"}
    monkeypatch.setattr(Blobs, "version", "2.0")  # a new dataset release: every cell
    data = _keys(path, reg)
    assert set(data[0].values()).isdisjoint(base[0].values())
    assert data[2:] == base[2:]
    monkeypatch.undo()


def test_checkpoint_content_enters_the_cell_key(tmp_path, reg):
    from robench.runner import _Keys

    checkpoint = tmp_path / "weights.bin"
    spec = load_experiment(_experiment(tmp_path, tmp_path / "m"), registry=reg)
    options = dataclasses.make_dataclass("O", [("checkpoint", str)], frozen=True)
    component = dataclasses.replace(spec.models[0].component,
                                    options=options("weights.bin"))
    keys = _Keys(spec, reg)
    checkpoint.write_bytes(b"old weights")
    old = keys.component(component)
    checkpoint.write_bytes(b"new weights")
    assert keys.component(component) != old


def test_every_defense_of_one_seed_faces_the_same_attack_randomness(tmp_path, cache, reg):
    path = _experiment(tmp_path, cache, defenses='none = []\nl2 = [{ defense = '
                       '"weight_decay", coefficient = 0.01 }]')
    _, _, training, attack = _keys(path, reg)
    assert len(set(attack.values())) == 1 and len(set(training.values())) == 2


def test_colliding_ids_are_refused_in_the_plan(tmp_path, cache, reg):
    spec = load_experiment(_experiment(tmp_path, cache), registry=reg)
    model = spec.models[0]
    twins = (dataclasses.replace(model, label="a--none"),
             dataclasses.replace(model, label="a", defenses=None))
    stacks = (spec.defenses[0], dataclasses.replace(spec.defenses[0], label="none--none"))
    spec = dataclasses.replace(spec, models=twins, defenses=stacks)
    with pytest.raises(RobenchError, match="two cells would share the id 'a--none--none--s0'"):
        plan(spec, reg)
