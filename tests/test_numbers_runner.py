"""The runner's keys and resume checks: which work an edit recomputes, and which stored
parts a rerun trusts (a unit is done only if its part is there and holds its key)."""

from __future__ import annotations

import hashlib
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
