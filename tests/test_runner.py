"""The runner: cells x attacks x budgets, stored rows, failures, caching and resuming."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from conftest import REPO, SMOKE, TESTS

import robench
from robench import api
from robench.results import RESULT_COLUMNS


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, registry):
    root = tmp_path_factory.mktemp("smoke")
    path = root / "exp.toml"
    path.write_text(SMOKE.replace("    ", "") + "\n")
    return api.run(path, out=root / "run", registry=registry, progress=False)


def test_rows_cover_every_cell_attack_eps_and_sample(smoke_run):
    df = smoke_run.results
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert smoke_run.status == "done"
    # 2 defense stacks x 6 budgets x 200 test samples
    assert len(df) == 2 * 6 * 200
    assert df.groupby(["defense", "epsilon"]).size().eq(200).all()
    assert set(df["cell"]) == {"mlp--none--s0", "mlp--l2--s0"}
    assert (df["threat_model"] == "linf").all() and (df["library"] == "tests").all()
    assert df["target"].isna().all() and (df["source"] == "data").all()


def test_host_measures_distance_and_prediction(smoke_run):
    df = smoke_run.results
    assert (df["distance"] <= df["epsilon"] + 1e-5).all()
    assert df["within_budget"].all()
    at_zero = df[df["epsilon"] == 0]
    assert (at_zero["pred_adv"] == at_zero["pred_clean"]).all()
    assert (df["success"] == (df["pred_adv"] != df["label"])).all()
    assert (df["correct_adv"] == (df["pred_adv"] == df["label"])).all()
    # noise of 0.5 on blobs separated by 0.5 breaks about half the inputs
    acc = df.groupby("epsilon")["correct_adv"].mean()
    assert acc.iloc[0] > 0.9 and acc.iloc[-1] < 0.75
    assert acc.is_monotonic_decreasing


def test_metrics_history_and_provenance(smoke_run):
    metrics = smoke_run.metrics
    assert metrics.loc[metrics["metric"] == "row_count", "value"].tolist() == [2400.0]
    history = smoke_run.histories
    assert set(history["split"]) == {"train", "test"}
    assert history.groupby("cell")["epoch"].max().eq(3).all()
    record = json.loads((smoke_run.path / "run.json").read_text())
    assert record["status"] == "done" and record["device"] == "cpu"
    assert record["versions"]["torch"] and record["experiment"]["config_hash"]
    assert record["data"]["n_test"] == 200 and record["data"]["input_shape"] == [4]
    assert smoke_run.results.attrs["num_classes"] == 2
    assert {u["status"] for u in record["units"].values()} == {"done"}
    assert all(c["cached"] is False for c in record["cells"].values())
    layers = smoke_run.store.first_layers()
    assert set(layers) == {"mlp--none--s0", "mlp--l2--s0"}
    assert layers["mlp--none--s0"].shape == (16, 4)  # Linear(4 -> 16) of the MLP


def test_failing_unit_is_recorded_and_others_complete(write_toml, registry, tmp_path):
    text = SMOKE + """
    [[attacks]]
    attack = "test.broken"
    epsilons = [0.1]
    """
    run = api.run(write_toml(text), out=tmp_path / "run", registry=registry, progress=False)
    assert run.status == "failed"
    failures = run.failures()
    assert set(failures) == {"mlp--none--s0--test.broken", "mlp--l2--s0--test.broken"}
    record = run.record.units["mlp--none--s0--test.broken"]
    assert "broken on purpose" in record.traceback
    assert set(run.results["attack"]) == {"noise"} and len(run.results) == 2400


def test_rerun_reuses_everything_and_changed_attack_is_recomputed(write_toml, registry, tmp_path):
    path = write_toml(SMOKE)
    out = tmp_path / "run"
    first = api.run(path, out=out, registry=registry, progress=False)
    parts = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.parquet")}
    second = api.run(path, out=out, registry=registry, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.parquet")} == parts
    pd.testing.assert_frame_equal(first.results, second.results)
    # a changed attack option: the old parts are moved aside, new ones computed;
    # the models come from the cache (shown by the run record)
    path.write_text(path.read_text().replace("repeats = 2", "repeats = 3"))
    third = api.run(path, out=out, registry=registry, progress=False)
    assert all(c.cached for c in third.record.cells.values())
    assert len(list((out / "superseded").glob("*.parquet"))) == 2
    assert len(third.results) == 2400


def test_load_reads_the_same_run_without_recomputing(smoke_run):
    import robench

    loaded = robench.load(smoke_run.path)
    assert loaded.status == "done" and not loaded.failures()
    pd.testing.assert_frame_equal(loaded.results, smoke_run.results)
    pd.testing.assert_frame_equal(loaded.metrics, smoke_run.metrics)


def test_unavailable_cuda_is_a_clear_error(write_toml, registry, tmp_path):
    import torch

    from robench import RobenchError

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RobenchError, match="CUDA is not available; use --device cpu or auto"):
        api.run(write_toml(SMOKE), out=tmp_path / "run", device="cuda", registry=registry)


def test_model_restricted_to_some_stacks(write_toml, registry):
    from robench.config import load_experiment
    from robench.runner import plan

    text = SMOKE.replace('hidden = [16]', 'hidden = [16]\ndefenses = ["l2"]')
    cells, units = plan(load_experiment(write_toml(text), registry=registry), registry)
    assert [c.id for c in cells] == ["mlp--l2--s0"] and len(units) == 1
    bad = SMOKE.replace('hidden = [16]', 'hidden = [16]\ndefenses = ["l22"]')
    with pytest.raises(robench.ConfigError, match=r"models\[0\].defenses: unknown defense "
                                                  r"stack 'l22' \(did you mean 'l2'\?\)"):
        load_experiment(write_toml(bad), registry=registry)


def test_shared_model_cache_trains_once_across_runs(write_toml, registry, tmp_path):
    text = SMOKE.replace('device = "cpu"', f'device = "cpu"\nmodel_cache = "{tmp_path}/cache"')
    path = write_toml(text)
    first = api.run(path, out=tmp_path / "a", registry=registry, progress=False)
    second = api.run(path, out=tmp_path / "b", registry=registry, progress=False)
    assert not any(c.cached for c in first.record.cells.values())
    assert all(c.cached for c in second.record.cells.values())
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    assert not (tmp_path / "b" / "models").exists()
    pd.testing.assert_frame_equal(first.histories, second.histories)
    pd.testing.assert_frame_equal(first.results, second.results)


def test_rerun_with_nothing_to_do_imports_no_torch_and_renders_nothing(write_toml, registry,
                                                                        tmp_path):
    path = write_toml(SMOKE.replace("formats = []", 'formats = ["md"]'))
    out = tmp_path / "run"
    first = api.run(path, out=out, registry=registry, progress=False)
    assert first.record.extra["threads"] >= 1  # the thread policy is recorded
    stamps = {p.name: p.stat().st_mtime_ns for p in [out / "report.md", out / "metrics.parquet",
                                                     *(out / "results").glob("*")]}
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import plugin_fixtures
        from robench import api
        from robench.plugins import build_registry
        run = api.run({str(path)!r}, out={str(out)!r}, progress=False,
                      registry=build_registry(autoload=False, plugins=[plugin_fixtures]))
        assert run.status == "done", run.status
        heavy = sorted(m for m in ("torch", "pandas", "matplotlib") if m in sys.modules)
        print("heavy:", heavy)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "heavy: []" in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in [out / "report.md", out / "metrics.parquet",
                                                   *(out / "results").glob("*")]} == stamps
    # a changed report format is rendered
    path.write_text(path.read_text().replace('formats = ["md"]', 'formats = ["md", "html"]'))
    api.run(path, out=out, registry=registry, progress=False)
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("threads, workers, expected", [(None, 1, 8), (None, 3, 2),
                                                        (None, 16, 1), (5, 3, 5)])
def test_thread_policy_divides_the_cores_by_the_workers(threads, workers, expected,
                                                        monkeypatch, write_toml, registry):
    import types

    from robench import runner
    from robench.config import load_experiment

    spec = load_experiment(write_toml(SMOKE), registry=registry)
    spec = dataclasses.replace(spec, threads=threads)
    monkeypatch.setattr(runner, "_cores", lambda: 8)
    assert runner.thread_count(spec, types.SimpleNamespace(workers=workers)) == expected
