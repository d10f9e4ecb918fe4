"""The runner's keys and resume checks: which work an edit recomputes, and which stored
parts a rerun trusts (a unit is done only if its part is there and holds its key)."""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap

import pandas as pd
import pytest
from conftest import SMOKE

import robench
from robench import api
from robench.config import load_experiment
from robench.runner import _file_digest, plan

KEY = ["cell", "attack", "epsilon", "sample"]
PART = "mlp--l2--s0--noise.parquet"


def keys(write_toml, registry, text: str, name: str = "exp.toml"):
    """``({cell id: key}, {unit id: key})`` of the experiment ``text``."""
    cells, units = plan(load_experiment(write_toml(text, name), registry=registry), registry)
    return {c.id: c.key for c in cells}, {u.id: u.key for u in units}


def changed(before: dict, after: dict) -> set[str]:
    return {i for i in before if i in after and before[i] != after[i]}


# each edit of the smoke experiment and the cells / units it must recompute (those
# not named keep their keys); "all" means every one
EDITS = {
    "attack budgets": (("num = 6", "num = 5"), set(), "all"),
    "attack option": (("repeats = 2", "repeats = 4"), set(), "all"),
    "samples": (("repeats = 2", "repeats = 2\nsamples = 10"), set(), "all"),
    "test subset": (('dataset = "test.blobs"', 'dataset = "test.blobs"\ntest_subset = 50'),
                    set(), "all"),
    "train subset": (('dataset = "test.blobs"',
                      'dataset = "test.blobs"\ntrain_subset = 50'), "all", "all"),
    "learning rate": (("lr = 0.01", "lr = 0.02"), "all", "all"),
    "model option": (("hidden = [16]", "hidden = [8]"), "all", "all"),
    "one stack's defense": (("coefficient = 0.01", "coefficient = 0.02"),
                            {"mlp--l2--s0"}, {"mlp--l2--s0--noise"}),
    "seed": (("seeds = [0]", "seeds = [1]"), None, None),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_each_edit_recomputes_exactly_the_affected_work(edit, write_toml, registry):
    (old, new), cells_changed, units_changed = EDITS[edit]
    cells0, units0 = keys(write_toml, registry, SMOKE)
    assert SMOKE.count(old) == 1
    cells1, units1 = keys(write_toml, registry, SMOKE.replace(old, new), "edited.toml")
    if cells_changed is None:  # new ids: nothing shared
        assert not set(cells0) & set(cells1) and not set(units0) & set(units1)
        assert len(set(cells0.values()) | set(cells1.values())) == 4
        return
    assert set(cells1) == set(cells0) and set(units1) == set(units0)
    assert changed(cells0, cells1) == (set(cells0) if cells_changed == "all"
                                       else cells_changed)
    assert changed(units0, units1) == (set(units0) if units_changed == "all"
                                       else units_changed)


def test_an_added_attack_or_seed_leaves_existing_keys(write_toml, registry):
    cells0, units0 = keys(write_toml, registry, SMOKE)
    more = SMOKE.replace("seeds = [0]", "seeds = [0, 1]").replace(
        "[metrics]", '[[attacks]]\nname = "noise2"\nattack = "test.sign_noise"\n'
                     "epsilons = [0.1]\n\n[metrics]")
    cells1, units1 = keys(write_toml, registry, more, "more.toml")
    assert {i: cells1[i] for i in cells0} == cells0
    assert {i: units1[i] for i in units0} == units0
    assert sorted(cells1) == ["mlp--l2--s0", "mlp--l2--s1", "mlp--none--s0", "mlp--none--s1"]
    assert len(units1) == 8 and len(set(units1.values())) == 8
    assert len(set(cells1.values())) == 4


def test_a_torch_upgrade_changes_every_cell(write_toml, registry, monkeypatch):
    import robench.runner

    cells0, units0 = keys(write_toml, registry, SMOKE)
    real = robench.runner._version
    monkeypatch.setattr(robench.runner, "_version",
                        lambda dist: "99.0" if dist == "torch" else real(dist))
    cells1, units1 = keys(write_toml, registry, SMOKE, "again.toml")
    assert changed(cells0, cells1) == set(cells0) and changed(units0, units1) == set(units0)


def test_models_train_only_their_listed_stacks(write_toml, registry):
    text = SMOKE.replace("hidden = [16]", 'hidden = [16]\ndefenses = ["l2"]')
    cells, units = plan(load_experiment(write_toml(text), registry=registry), registry)
    assert [c.id for c in cells] == ["mlp--l2--s0"]
    assert [u.id for u in units] == ["mlp--l2--s0--noise"]
    assert cells[0].dataset == "test.blobs"


def test_plan_orders_cells_by_model_stack_then_seed(write_toml, registry):
    text = SMOKE.replace("seeds = [0]", "seeds = [1, 0]")
    cells, units = plan(load_experiment(write_toml(text), registry=registry), registry)
    assert [c.id for c in cells] == ["mlp--none--s1", "mlp--none--s0", "mlp--l2--s1",
                                     "mlp--l2--s0"]
    assert [u.id for u in units] == [f"{c.id}--noise" for c in [*cells]]
    assert all(u.key != u.cell.key for u in units)


def test_transfer_units_are_keyed_by_their_source_cell(write_toml, registry):
    transfer = SMOKE.replace(
        "[metrics]", '[[attacks]]\nname = "moved"\nattack = "test.sign_noise"\n'
                     'epsilons = [0.1]\nsource = "mlp/l2"\n\n[metrics]')
    _, units0 = keys(write_toml, registry, transfer)
    _, units1 = keys(write_toml, registry, transfer.replace("coefficient = 0.01",
                                                            "coefficient = 0.02"), "b.toml")
    # the l2 cell changed: its own units and every unit crafted on it
    assert changed(units0, units1) == {"mlp--l2--s0--noise", "mlp--l2--s0--moved",
                                       "mlp--none--s0--moved"}


def test_two_units_sharing_an_id_are_refused(write_toml, registry):
    import dataclasses

    spec = load_experiment(write_toml(SMOKE), registry=registry)
    twice = dataclasses.replace(spec, models=spec.models * 2)
    with pytest.raises(robench.RobenchError, match="two cells would share the id "
                                                   "'mlp--l2--s0'; rename a label"):
        plan(twice, registry)
    twice = dataclasses.replace(spec, attacks=spec.attacks * 2)
    with pytest.raises(robench.RobenchError, match="two units would share the id "
                                                   "'mlp--l2--s0--noise'"):
        plan(twice, registry)


def test_file_digest_is_the_sha256_of_the_content(tmp_path, monkeypatch):
    (tmp_path / "w.pt").write_bytes(b"weights")
    expected = hashlib.sha256(b"weights").hexdigest()
    assert _file_digest(str(tmp_path / "w.pt"), tmp_path / "elsewhere") == expected
    assert _file_digest("w.pt", tmp_path) == expected  # relative to the experiment file
    monkeypatch.chdir(tmp_path)
    assert _file_digest("w.pt", tmp_path / "elsewhere") == expected  # or the working dir
    assert _file_digest("missing.pt", tmp_path) is None
    assert _file_digest(".", tmp_path) is None  # a directory is no checkpoint


# --------------------------------------------------------------- resume

@pytest.fixture(scope="module")
def finished(tmp_path_factory, registry):
    """A finished smoke run and its sorted rows."""
    root = tmp_path_factory.mktemp("numbers_runner")
    path = root / "exp.toml"
    path.write_text(textwrap.dedent(SMOKE))
    run = api.run(path, out=root / "run", registry=registry, progress=False)
    return path, root / "run", run.results.sort_values(KEY).reset_index(drop=True)


def rerun(finished, tmp_path, registry, edit=None):
    """Copy the finished run, let ``edit(run_dir)`` damage it, rerun; return the run and
    the parts' modification times before and after."""
    path, done, rows = finished
    out = tmp_path / "run"
    shutil.copytree(done, out)
    if edit is not None:
        edit(out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.parquet")}
    run = api.run(path, out=out, registry=registry, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.parquet")}
    return run, before, after


def test_a_done_unit_whose_part_is_missing_is_recomputed(finished, tmp_path, registry):
    """Bug: a unit marked done in run.json whose part is missing stays done (its rows
    silently disappear)."""
    run, before, after = rerun(finished, tmp_path, registry,
                               lambda out: (out / "results" / PART).unlink())
    assert PART not in before and PART in after
    assert run.record.units["mlp--l2--s0--noise"].status == "done"
    pd.testing.assert_frame_equal(run.results.sort_values(KEY).reset_index(drop=True),
                                  finished[2])


def test_intact_parts_are_trusted(finished, tmp_path, registry):
    run, before, after = rerun(finished, tmp_path, registry)
    assert before == after and len(after) == 2
    assert run.status == "done"


def test_a_part_holding_another_units_key_is_superseded_and_recomputed(
        finished, tmp_path, registry):
    def swap(out):
        shutil.copyfile(out / "results" / "mlp--none--s0--noise.parquet",
                        out / "results" / PART)

    run, _, _ = rerun(finished, tmp_path, registry, swap)
    superseded = list((tmp_path / "run" / "superseded").glob("mlp--l2--s0--noise.*.parquet"))
    assert len(superseded) == 1
    pd.testing.assert_frame_equal(run.results.sort_values(KEY).reset_index(drop=True),
                                  finished[2])


def test_a_removed_attacks_parts_move_to_superseded(finished, tmp_path, registry):
    path, done, _ = finished
    out = tmp_path / "run"
    shutil.copytree(done, out)
    text = textwrap.dedent(SMOKE).replace('name = "noise"', 'name = "renamed"')
    edited = tmp_path / "exp.toml"
    edited.write_text(text)
    old_key = robench.load(out).record.units["mlp--l2--s0--noise"].key
    run = api.run(edited, out=out, registry=registry, progress=False)
    assert sorted(p.name for p in (out / "results").glob("*.parquet")) == [
        "mlp--l2--s0--renamed.parquet", "mlp--none--s0--renamed.parquet"]
    assert (out / "superseded" / f"mlp--l2--s0--noise.{old_key}.parquet").is_file()
    assert len(pd.read_parquet(out / "results")) == len(run.results)


# --------------------------------------------------------------- key material


def test_the_key_material_is_the_documented_one(write_toml, registry):
    """Every entry a key hashes is documented (docs/run-directory.md renders
    KEY_MATERIAL): a renamed, added or dropped entry fails here."""
    from pathlib import Path

    from robench.runner import KEY_MATERIAL, describe_key_material, plan_with_material

    page = (Path(__file__).resolve().parents[1] / "docs" / "run-directory.md").read_text()
    assert describe_key_material() in page
    documented: dict[str, set[str]] = {}
    for part, entry, _ in KEY_MATERIAL:
        documented.setdefault(part, set()).add(entry)
    transfer = SMOKE.replace("[metrics]", '[[attacks]]\nname = "moved"\nattack = '
                             '"test.sign_noise"\nepsilons = [0.1]\nsource = "mlp/l2"\n\n'
                             "[metrics]")
    cells, units, material = plan_with_material(
        load_experiment(write_toml(transfer), registry=registry), registry)
    cell = material["mlp--l2--s0"]
    assert set(cell) == documented["cell"] and set(cell["data"]) == documented["data"]
    unit = material["mlp--none--s0--moved"]
    assert set(unit) == documented["unit"]
    components = [cell["data"]["dataset"], cell["model"], *cell["defenses"], unit["attack"]]
    assert all(set(c) <= documented["component"] for c in components)
    assert {"name", "options", "version", "package"} <= set(cell["model"])
    assert set(unit["attack"]) == documented["component"] - {"checkpoint_content"}
    # the values: what the experiment says, the cell's key, and the hash of the material
    assert (cell["seed"], cell["data"]["root"], cell["data"]["train_subset"]) == (0, None, None)
    assert cell["defenses"][0]["name"] == "weight_decay"
    assert cell["defenses"][0]["options"]["coefficient"] == 0.01
    assert cell["model"]["options"]["hidden"] == [16]
    assert cell["training"]["lr"] == 0.01 and cell["training"]["epochs"] == 3
    assert cell["torch"] == robench.runner._version("torch") is not None
    assert unit["attack"]["library"][0] == "tests"
    assert unit["epsilons"] == [0.1] and unit["samples"] is None
    assert (unit["test_subset"], unit["targets"]) == (None, None)
    by_id = {c.id: c for c in cells}
    assert unit["cell"] == by_id["mlp--none--s0"].key
    assert unit["source"] == by_id["mlp--l2--s0"].key
    assert material["mlp--l2--s0--noise"]["source"] is None
    for thing in (*cells, *units):
        text = json.dumps(material[thing.id], sort_keys=True, separators=(",", ":"))
        assert thing.key == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_key_changes_name_each_differing_entry():
    from robench.runner import describe_change, key_changes, version_change

    old = {"torch": "2.0", "model": {"name": "cnn", "options": {"w": 1}, "version": "1",
                                     "package": ["p", "0.1"], "checkpoint_content": "aa"},
           "defenses": [{"name": "d", "version": "1"}], "seed": 0}
    new = {"torch": "2.1", "model": {"name": "cnn", "options": {"w": 2}, "version": "2",
                                     "package": ["p", "0.2"], "checkpoint_content": "bb"},
           "defenses": [{"name": "d", "version": "3"}], "seed": 0, "added": 1}
    changes = key_changes(old, new)
    assert [c[0] for c in changes] == [
        ("torch",), ("model", "options", "w"), ("model", "version"), ("model", "package"),
        ("model", "checkpoint_content"), ("defenses", 0, "version"), ("added",)]
    assert [describe_change(new, *c) for c in changes] == [
        "torch 2.0 -> 2.1", "model.options.w 1 -> 2", "model 'cnn' version 1 -> 2",
        "p 0.1 -> 0.2", "the checkpoint of model 'cnn' changed",
        "defense 'd' version 1 -> 3", "added null -> 1"]
    assert [version_change(new, *c) is not None for c in changes] == [
        True, False, True, True, False, True, False]
    assert key_changes(old, old) == []
    # a stack of another length, or a package renamed, is no version change
    assert key_changes({"defenses": [{"a": 1}]}, {"defenses": []}) == [
        (("defenses",), [{"a": 1}], [])]
    # an object or a list of objects against anything else is one change
    assert key_changes({"s": {"x": 1}}, {"s": 5}) == [(("s",), {"x": 1}, 5)]
    assert key_changes({"s": 5}, {"s": {"x": 1}}) == [(("s",), 5, {"x": 1})]
    assert key_changes({"d": [{"a": 1}]}, {"d": [2]}) == [(("d",), [{"a": 1}], [2])]
    assert key_changes({"d": [2]}, {"d": [{"a": 1}]}) == [(("d",), [2], [{"a": 1}])]
    assert key_changes({"d": [{"a": 1}]}, {"d": 3}) == [(("d",), [{"a": 1}], 3)]
    assert version_change({}, ("x", "library"), ["a", "1"], ["b", "1"]) is None
    assert version_change({}, ("x", "library"), ["a", "1"], ["a", "2"]) == ("a", "1", "2")
    assert version_change({}, ("version",), "1", "2") is None  # not a component's
    long = describe_change({}, ("epsilons",), list(range(30)), [])
    assert long == f"epsilons {json.dumps(list(range(30)))[:37]}... -> []"


# --------------------------------------------------------------- version changes


def _with_versions(monkeypatch, **versions):
    """Pretend the given distributions (``torch=...``) are installed in these versions."""
    import robench.runner

    real = robench.runner._version
    monkeypatch.setattr(robench.runner, "_version",
                        lambda dist: versions.get(dist, real(dist)))


def test_a_rerun_says_why_it_recomputes(finished, tmp_path, registry, monkeypatch, capsys):
    from plugin_fixtures import SignNoise

    torch_version, attack_version = robench.runner._version("torch"), SignNoise.version
    _with_versions(monkeypatch, torch="99.0")
    monkeypatch.setattr(SignNoise, "version", "7.5")
    capsys.readouterr()
    run, before, after = rerun(finished, tmp_path, registry)
    err = capsys.readouterr().err
    assert f"recomputing 2 cells: torch {torch_version} -> 99.0" in err
    assert (f"recomputing 2 units: torch {torch_version} -> 99.0; attack "
            f"'test.sign_noise' version {attack_version} -> 7.5") in err
    assert all(before[p] != after[p] for p in before)
    record = run.record
    assert record.cells["mlp--l2--s0"].key_material["torch"] == "99.0"
    assert record.units[PART.removesuffix(".parquet")].key_material["attack"]["version"] == "7.5"
    assert not record.kept


def test_keep_holds_results_across_a_version_change(finished, tmp_path, registry,
                                                    monkeypatch, capsys):
    path, done, rows = finished
    torch_version = robench.runner._version("torch")
    _with_versions(monkeypatch, torch="99.0")
    out = tmp_path / "run"
    shutil.copytree(done, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.parquet")}
    capsys.readouterr()
    run = api.run(path, out=out, registry=registry, progress=False,
                  overrides={"experiment.on_version_change": "keep"})
    assert before == {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.parquet")}
    pd.testing.assert_frame_equal(run.results.sort_values(KEY).reset_index(drop=True), rows)
    was = f"torch {torch_version} (now 99.0)"
    assert run.record.kept == {i: [was] for i in [*run.record.cells, *run.record.units]}
    assert f"keeping 2 units computed with {was}" in capsys.readouterr().err
    assert robench.load(out).record.kept == run.record.kept
    from robench.results import RunStore
    from robench_plugins.reporters import Provenance

    report = Provenance().sections(RunStore(out))[0].text
    assert f"**kept from an earlier run**: `2 models trained with {was}; 2 units " \
           f"computed with {was}`" in report
    for cell in run.record.cells.values():  # the material that produced the kept model
        assert cell.key_material["torch"] == torch_version
    # anything but a version still recomputes, with the kept cell's model
    edited = tmp_path / "edited.toml"
    edited.write_text(path.read_text().replace("repeats = 2", "repeats = 3"))
    again = api.run(edited, out=out, registry=registry, progress=False,
                    overrides={"experiment.on_version_change": "keep"})
    assert set(again.record.kept) == set(again.record.cells)
    assert all(c.cached for c in again.record.cells.values())
    assert len(list((out / "superseded").glob("*.parquet"))) == 2
    # and the default recomputes everything
    third = api.run(edited, out=out, registry=registry, progress=False)
    assert not third.record.kept
    assert all(c.key_material["torch"] == "99.0" for c in third.record.cells.values())


# --------------------------------------------------------------- the resume check


@pytest.fixture
def fresh(write_toml, registry, tmp_path):
    """A runner of the smoke experiment into an empty run directory, and one unit."""
    from robench.runner import Runner

    runner = Runner(load_experiment(write_toml(SMOKE), registry=registry), tmp_path / "run",
                    registry=registry, progress=False)
    return runner, next(u for u in runner.units if u.id == PART.removesuffix(".parquet"))


def _part(runner, unit, key, record=None):
    from robench.results import write_part

    path = runner.store.part_path(unit.id)
    write_part(path, pd.DataFrame({"sample": [0, 1]}), key, record or {})
    return path


def test_a_unit_without_a_part_is_pending(fresh):
    from robench.record import UnitRecord

    runner, unit = fresh
    done = UnitRecord(cell=unit.cell.id, attack="noise", key=unit.key, status="done")
    record = runner._unit_record(unit, done)
    assert (record.cell, record.attack, record.key) == ("mlp--l2--s0", "noise", unit.key)
    assert record.status == "pending" and record.rows is None and not runner.messages


def test_a_damaged_part_is_set_aside_and_recomputed(fresh):
    runner, unit = fresh
    path = runner.store.part_path(unit.id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    record = runner._unit_record(unit, None)
    assert record.status == "pending" and record.key == unit.key
    assert not path.exists()
    assert (runner.store.path / "damaged" / PART).read_bytes() == b"not parquet"
    assert len(runner.messages) == 1
    assert runner.messages[0].startswith(f"{path}: damaged results part (")
    assert runner.messages[0].endswith(f"moved to {runner.store.path / 'damaged' / PART}, "
                                       "recomputing it")


@pytest.mark.parametrize("stored, old, name", [
    ("0123456789abcdef", None, "0123456789abcdef"),  # another unit's part: its key
    (None, "fedcba9876543210", "fedcba9876543210"),  # a part without one: the record's
    (None, None, "unknown"),
])
def test_a_part_of_another_key_is_superseded(fresh, stored, old, name):
    from robench.record import UnitRecord

    runner, unit = fresh
    path = runner.store.part_path(unit.id)
    if stored is None:
        path.parent.mkdir(parents=True)
        pd.DataFrame({"sample": [0]}).to_parquet(path)
    else:
        _part(runner, unit, stored)
    old_record = UnitRecord(unit.cell.id, "noise", old, status="done") if old else None
    record = runner._unit_record(unit, old_record)
    assert record.status == "pending" and record.key == unit.key and not path.exists()
    assert [p.name for p in (runner.store.path / "superseded").iterdir()] == [
        f"{unit.id}.{name}.parquet"]
    assert not runner.messages


def test_a_recorded_done_unit_with_its_part_is_kept(fresh):
    from robench.record import UnitRecord

    runner, unit = fresh
    _part(runner, unit, unit.key, {"status": "done", "rows": 99})
    old = UnitRecord(unit.cell.id, "noise", unit.key, status="done", rows=2, seconds=1.5)
    assert runner._unit_record(unit, old) is old


@pytest.mark.parametrize("old_status, old_key", [(None, None), ("failed", "same"),
                                                  ("done", "other")])
def test_a_part_not_yet_recorded_is_adopted_from_its_metadata(fresh, old_status, old_key):
    from robench.record import UnitRecord

    runner, unit = fresh
    stored = {"cell": unit.cell.id, "attack": "noise", "key": unit.key, "status": "done",
              "rows": 12, "seconds": 0.5, "details": {"minimal": False}, "future": 7,
              "extra": "an entry of that name is an extra too"}
    path = _part(runner, unit, unit.key, stored)
    old = None if old_status is None else UnitRecord(
        unit.cell.id, "noise", unit.key if old_key == "same" else "0" * 16, status=old_status,
        rows=3)
    record = runner._unit_record(unit, old)
    assert record == UnitRecord(cell=unit.cell.id, attack="noise", key=unit.key,
                                status="done", rows=12, seconds=0.5,
                                details={"minimal": False},
                                extra={"future": 7,
                                       "extra": "an entry of that name is an extra too"})
    assert path.is_file() and not runner.messages


def test_a_relative_checkpoint_is_read_beside_the_experiment_file(write_toml, registry,
                                                                   tmp_path, monkeypatch):
    """The checkpoint's content (its SHA-256, computed here by hand) enters the model's
    material, the file found relative to the experiment file from any working directory;
    an attack's material names its library and that library's version."""
    import dataclasses

    from robench.runner import _Keys

    path = write_toml(SMOKE)
    (path.parent / "weights.bin").write_bytes(b"the weights")
    spec = load_experiment(path, registry=registry)
    options = dataclasses.make_dataclass("O", [("checkpoint", str)], frozen=True)
    model = dataclasses.replace(spec.models[0].component, options=options("weights.bin"))
    monkeypatch.chdir(tmp_path / "..")
    material = _Keys(spec, registry).component(model)
    assert material["checkpoint_content"] == hashlib.sha256(b"the weights").hexdigest()
    assert material["name"] == "mlp" and material["options"] == {"checkpoint": "weights.bin"}
    entry = registry.entry("model", "mlp")
    assert material["version"] == entry.cls.version
    assert material["package"] == [entry.package, entry.version]
    assert "library" not in material
    assert "checkpoint_content" not in _Keys(spec, registry).component(spec.models[0].component)
    attack = _Keys(spec, registry).component(spec.attacks[0].component)
    assert attack["library"] == ["tests", robench.runner._version("tests")]
    monkeypatch.setattr(robench.runner, "ATTACK_DISTRIBUTIONS", {"tests": "pandas"})
    assert _Keys(spec, registry).component(spec.attacks[0].component)["library"] == [
        "tests", pd.__version__]
    from plugin_fixtures import SignNoise

    for nothing in (None, ""):  # an attack that names no library (as documented)
        monkeypatch.setattr(SignNoise, "library", nothing)
        assert _Keys(spec, registry).component(spec.attacks[0].component)["library"] == [
            "", None]


def test_keep_chooses_each_key_and_units_follow_their_cells_choice(write_toml, registry):
    from robench.runner import plan_with_material

    spec = load_experiment(write_toml(SMOKE), registry=registry)
    cells0, units0, material0 = plan_with_material(spec, registry)
    calls = []

    def keep(kind, id_, material, key):
        calls.append((kind, id_, key))
        kept = id_ in ("mlp--l2--s0", "mlp--none--s0--noise")
        return (f"kept-{id_}", {"was": key}) if kept else (key, material)

    cells, units, material = plan_with_material(spec, registry, keep=keep)
    assert calls[:2] == [("cell", c.id, c.key) for c in cells0]
    assert [c.key for c in cells] == [cells0[0].key, "kept-mlp--l2--s0"]
    assert material["mlp--l2--s0"] == {"was": cells0[1].key}
    assert material["mlp--none--s0"] == material0["mlp--none--s0"]
    # units: keyed by the chosen cell key, offered to keep as units
    assert [c[0] for c in calls[2:]] == ["unit", "unit"]
    assert calls[2] == ("unit", units0[0].id, units0[0].key)
    assert units[0].key == "kept-mlp--none--s0--noise"
    assert material["mlp--none--s0--noise"] == {"was": units0[0].key}
    assert material["mlp--l2--s0--noise"]["cell"] == "kept-mlp--l2--s0"
    assert calls[3][2] == units[1].key != units0[1].key
    assert units[1].key == hashlib.sha256(json.dumps(
        material["mlp--l2--s0--noise"], sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:16]
