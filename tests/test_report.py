"""Reports rendered from a hand-built run directory (no model, no torch).

``make_run_dir`` writes a small run by hand — run.json, one results parquet part per
finished unit, metrics.parquet, histories and example artifacts — with accuracies chosen
here, so the expected table values and sentences can be computed independently.
"""

from __future__ import annotations

import html.parser
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robench import Reporter, ReportSection, RobenchError
from robench.metric_pipeline import compute
from robench.plugins import build_registry
from robench.report import (
    collect_comparison_sections,
    collect_sections,
    render_comparison,
    render_report,
    run_labels,
)
from robench.results import RunStore, atomic_write_json, atomic_write_parquet, write_part

N = 20  # samples per attack
DEFENSES = ("none", "l2", "pgd")
SEEDS = (0, 1)
ATTACKS = {
    "fgsm": {"component": "torchattacks.FGSM", "library": "torchattacks",
             "threat_model": "linf", "epsilons": [0.0, 1 / 16, 2 / 16, 3 / 16, 4 / 16]},
    "swap": {"component": "pixel_swap", "library": "robench", "threat_model": "l0",
             "epsilons": [0.0, 0.1, 0.2, 0.3]},
}
# accuracy of seed 0 at each eps of the grid; seed 1 is 0.1 lower wherever that stays >= 0
ACCURACY = {
    ("none", "fgsm"): [0.9, 0.6, 0.3, 0.1, 0.0],
    ("l2", "fgsm"): [0.9, 0.8, 0.6, 0.4, 0.2],
    ("pgd", "fgsm"): [0.85, 0.85, 0.8, 0.7, 0.6],
    ("none", "swap"): [0.9, 0.8, 0.7, 0.6],
    ("l2", "swap"): [0.9, 0.85, 0.8, 0.75],
    ("pgd", "swap"): [0.85, 0.5, 0.3, 0.2],
}
FAILED_UNIT = ("digits-mlp-pgd-s1", "swap")
FAILED_CELL = "digits-mlp-broken-s0"


def accuracy(defense, attack, seed, shift=0.0):
    acc = np.array(ACCURACY[(defense, attack)]) + shift
    return np.where(acc >= 0.1 * seed, acc - 0.1 * seed, acc).clip(0, 1)


def cell_id(defense, seed):
    return f"digits-mlp-{defense}-s{seed}"


def auc(acc, eps):
    return float(np.trapezoid(acc, eps) / (max(eps) - min(eps)))


def make_run_dir(path: Path, *, shift: float = 0.0, name: str = "fixture") -> Path:
    """Write a complete small run directory by hand; ``shift`` moves every accuracy."""
    path = Path(path)
    store = RunStore(path)
    rng = np.random.default_rng(0)
    cells, units, metrics = {}, {}, []
    for defense in DEFENSES:
        for seed in SEEDS:
            cid = cell_id(defense, seed)
            cell = {"dataset": "digits", "model": "mlp", "defense": defense, "seed": seed,
                    "cell": cid}
            cells[cid] = {"cell": cell, "key": f"key-{cid}", "status": "done", "cached": False,
                          "train_seconds": 2.5, "error": None, "traceback": None}
            metrics.append({**cell, "metric": "ge_gap_accuracy",
                            "value": 0.05 * (DEFENSES.index(defense) + 1),
                            "higher_is_better": False})
            metrics.append({**cell, "metric": "mystery_score", "value": 3.0 + seed,
                            "higher_is_better": None})
            for layer, std in (("fc1", 0.4), ("fc2", 0.2)):
                metrics.append({**cell, "metric": "singular_value_std", "layer": layer,
                                "value": std + 0.01 * seed, "higher_is_better": None})
            history = pd.DataFrame([
                {"epoch": e, "split": split, "loss": 2.0 / e + (0.3 if split == "test" else 0),
                 "accuracy": 0.3 * e - (0.05 if split == "test" else 0)}
                for e in (1, 2, 3) for split in ("train", "test")])
            atomic_write_parquet(store.cell_dir(cid) / "history.parquet", history)
            np.save(store.first_layer_path(cid), rng.normal(size=(16, 64)))  # linear 64 -> 16
            for attack, meta in ATTACKS.items():
                uid = f"{cid}--{attack}"
                if (cid, attack) == FAILED_UNIT:
                    units[uid] = {"cell": cid, "attack": attack, "key": uid, "status": "failed",
                                  "seconds": 0.1, "rows": 0,
                                  "error": "ValueError: swap exploded",
                                  "traceback": "Traceback (most recent call last):\n  "
                                  "File \"x.py\", line 1, in <module>\n"
                                  "ValueError: swap exploded"}
                    continue
                eps = meta["epsilons"]
                acc = accuracy(defense, attack, seed, shift)
                rows = []
                for e, a in zip(eps, acc):
                    correct = np.arange(N) < round(a * N)
                    clean = np.arange(N) < round(acc[0] * N)
                    for s in range(N):
                        rows.append({**cell, "attack": attack,
                                     "attack_component": meta["component"],
                                     "library": meta["library"], "library_version": "1.0",
                                     "threat_model": meta["threat_model"], "epsilon": e,
                                     "sample": s, "source": "data", "target": pd.NA,
                                     "label": s % 10, "pred_clean": s % 10,
                                     "pred_adv": s % 10 if correct[s] else (s + 1) % 10,
                                     "success": not correct[s], "distance": e,
                                     "confidence": 0.9, "margin": 0.5,
                                     "correct_clean": bool(clean[s]),
                                     "correct_adv": bool(correct[s])})
                frame = pd.DataFrame(rows)
                frame["target"] = frame["target"].astype("Int64")
                frame["label"] = frame["label"].astype("Int64")
                units[uid] = {"cell": cid, "attack": attack, "key": uid, "status": "done",
                              "seconds": 1.5,
                              "rows": len(frame), "over_budget": int(attack == "swap"),
                              "error": None, "traceback": None}
                write_part(store.part_path(uid), frame, uid, units[uid])
                if attack == "fgsm":
                    for e in eps:
                        metrics.append({**cell, "metric": "fooling_success", "attack": attack,
                                        "threat_model": "linf", "epsilon": e,
                                        "value": min(1.0, 2 * e), "higher_is_better": False})
                    clean_x = rng.uniform(0, 1, size=(3, 1, 8, 8)).astype("float32")
                    adv = np.stack([np.clip(clean_x + e * rng.choice([-1, 1], clean_x.shape),
                                            0, 1) for e in eps]).astype("float32")
                    pred = np.array([[lab if i == 0 else (lab + i) % 10 for lab in (0, 1, 2)]
                                     for i in range(len(eps))])
                    path_npz = store.artifact_path(cid, attack)
                    path_npz.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(path_npz, epsilons=np.array(eps), clean=clean_x,
                             labels=np.array([0, 1, 2]), adversarial=adv, pred_adv=pred)
    cells[FAILED_CELL] = {"cell": {"dataset": "digits", "model": "mlp", "defense": "broken",
                                   "seed": 0, "cell": FAILED_CELL},
                          "key": "key-broken", "status": "failed", "cached": False, "seconds": 0.2,
                          "error": "RuntimeError: CUDA out of memory (fixture)",
                          "traceback": "Traceback (most recent call last):\n"
                          "RuntimeError: CUDA out of memory (fixture)"}
    (path / "experiment.toml").write_text(
        f'[experiment]\nname = "{name}"\nseeds = [0, 1]\n\n[data]\ndataset = "digits"\n')
    atomic_write_json(store.run_json_path, {
        "robench_version": "0.1.0",
        "experiment": {"name": name, "file": "benchmarks/fixture.toml",
                       "config": {"experiment": {"name": name, "seeds": [0, 1]},
                                  "data": {"dataset": "digits"},
                                  "training": {"epochs": 3 if shift == 0 else 4}},
                       "config_hash": "abc123def4567890" if shift == 0 else "fff000"},
        "data": {"name": "digits", "input_shape": [1, 8, 8], "num_classes": 10,
                 "bounds": [0.0, 1.0], "eps_scale": 16,
                 "source": "scikit-learn load_digits, see https://archive.ics.uci.edu"},
        "versions": {"python": "3.11", "torch": "2.14.1", "foolbox": "3.3.4",
                     "torchattacks": "3.5.1", "adversarial-robustness-toolbox": "1.20.1",
                     "robench": "0.1.0", "plugins": {}},
        "device": "cpu", "seeds": [0, 1], "started": "2026-11-23T08:00:00Z",
        "finished": "2026-11-23T08:01:30Z", "duration_s": 90.0, "status": "done",
        "cells": cells, "units": units, "attacks": ATTACKS,
        "metric_errors": {"margins": "Traceback (most recent call last):\n"
                                     "KeyError: 'no such layer (fixture)'\n"}})
    hand = pd.DataFrame(metrics).astype({"higher_is_better": "boolean"})
    computed, errors = compute([registry_metric(name) for name in METRICS], store.results, hand)
    assert not errors
    atomic_write_parquet(store.metrics_path, computed)
    return path


METRICS = ("clean_accuracy", "robust_accuracy", "auc", "worst_case", "breakdown_point")
"""The metrics of the fixture run, computed from its results by the metric plugins."""


def registry_metric(name):
    return build_registry(autoload=False).get("metric", name)()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The fixture run rendered once with the built-in reporters only."""
    run_dir = make_run_dir(tmp_path_factory.mktemp("report") / "run")
    paths = render_report(run_dir, registry=build_registry(autoload=False))
    return run_dir, paths


class ListRegistry:
    """The two registry methods the renderer uses, over a fixed list of reporters."""

    def __init__(self, *reporters):
        self.reporters = {cls.name: cls for cls in reporters}

    def names(self, kind):
        assert kind == "reporter"
        return sorted(self.reporters)

    def get(self, kind, name):
        return self.reporters[name]


def _summary(run_dir):
    from robench_plugins.reporters.summary import Summary

    (section,) = Summary().sections(RunStore(run_dir))
    return section


def test_summary_table_values_and_best_marked(rendered):
    run_dir, _ = rendered
    robustness, other = (t.set_index("quantity") for t in _summary(run_dir).tables)
    assert list(other.columns) == ["none", "l2", "pgd", "broken"]  # the run's order
    # the robustness table ranks configurations by mean AUC (no worst case here)
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    score = (metrics[metrics["metric"] == "auc"].groupby(["defense", "attack"])["value"].mean()
             .groupby("defense").mean().sort_values(ascending=False))
    assert list(robustness.columns) == [*score.index, "broken"]
    assert list(score.index) == ["l2", "pgd", "none"]
    table = pd.concat([robustness, other])
    eps = ATTACKS["fgsm"]["epsilons"]
    for defense in DEFENSES:
        mean = np.mean([auc(accuracy(defense, "fgsm", s), eps) for s in SEEDS])
        cell = table.at["AUC · fgsm [0, 4/16]", defense]
        assert cell.strip("*").startswith(f"{mean:.3f} ± "), (defense, cell)
    # pgd has the largest fgsm AUC; the GE gap grows none < l2 < pgd
    assert table.at["AUC · fgsm [0, 4/16]", "pgd"].startswith("**")
    assert not table.at["AUC · fgsm [0, 4/16]", "none"].startswith("**")
    assert table.at["ge gap accuracy", "none"].startswith("**0.050")  # lower is better
    assert "ge gap accuracy" in other.index and "clean accuracy" in robustness.index
    # clean accuracy: none and l2 tie at (0.9 + 0.8) / 2 for seeds 0 and 1
    assert table.at["clean accuracy", "none"].startswith("**0.850")
    assert table.at["clean accuracy", "l2"].startswith("**0.850")
    assert table.at["clean accuracy", "pgd"] == "0.800 ± 0.635"  # t(1) interval of 0.85/0.75
    # the failed pgd/seed-1 swap unit leaves one seed: no interval, and it says so
    assert table.at["AUC · swap [0, 30%]", "pgd"] == \
        f"{auc(accuracy('pgd', 'swap', 0), ATTACKS['swap']['epsilons']):.3f} (1 of 2 seeds)"
    # an unknown metric still gets a row (no best marked: direction unknown)
    assert table.at["mystery score", "none"] == "3.500 ± 6.353"
    assert table.at["clean accuracy", "broken"] == ""


def test_summary_sentences(rendered):
    run_dir, _ = rendered
    text = _summary(run_dir).text
    # means over seeds: fgsm none .85 .55 .25 .05 0, l2 .85 .75 .55 .35 .15,
    # pgd .8 .8 .75 .65 .55 -> widest gap (0.6) at 3/16; midpoint 2/16
    assert ("Under **fgsm** (linf), the configurations differ most at ε = 3/16: **pgd** "
            "keeps 65.0% accuracy and **none** 5.0%; at ε = 2/16 (the grid's midpoint), "
            "**pgd** keeps 75.0% and **none** 25.0% (best and worst of 3).") in text
    # swap: pgd has seed 0 only (its seed-1 unit failed): .85 .5 .3 .2
    assert ("Under **swap** (l0), the configurations differ most at 30% of input values "
            "changed: **l2** keeps 70.0% accuracy and **pgd** 20.0%; at 10% of input values "
            "changed (the grid's midpoint), **l2** keeps 80.0% and **pgd** 50.0% (best and "
            "worst of 3).") in text


def test_report_files_are_self_contained(rendered):
    run_dir, paths = rendered
    assert set(paths) == {"html", "md"}
    page = paths["html"].read_text()
    md = paths["md"].read_text()

    class Refs(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.refs, self.images = [], 0

        def handle_starttag(self, tag, attrs):
            for key, value in attrs:
                if key in ("src", "href"):
                    self.refs.append(value)
            self.images += tag == "img"

    parser = Refs()
    parser.feed(page)
    figures = sorted((run_dir / "figures").glob("*.png"))
    assert parser.images == len(figures) >= 6
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in parser.refs), \
        [r[:40] for r in parser.refs if not r.startswith(("data:", "#"))]
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert len(re.findall(r"!\[[^\]]*\]\(figures/[^)]+\.png\)", md)) == len(figures)
    for text in (page, md):
        assert "swap exploded" in text and "CUDA out of memory (fixture)" in text
        assert "no such layer (fixture)" in text  # a failed metric
        assert "abc123def4567890" in text and "mystery score" in text
    # provenance per cell: train time, units done, attack time, inputs rejected over budget
    assert "| digits-mlp-pgd-s1 | digits | mlp | pgd | 1 | done | False | 2.5 s | 1/2 done " \
           "| 1.6 s | 0 |" in md
    # short sweeps get a table of the curve: means over seeds per budget, in percent
    assert "| budget | none | l2 | pgd |" in md
    assert "| 2/16 | 25.0% | 55.0% | 75.0% |" in md
    assert "| 10% | 75.0% | 80.0% | 50.0% |" in md  # swap, pgd from seed 0 only
    # traceback text is escaped, not parsed as markup
    assert "in &lt;module&gt;" in page
    # the data source URL is shown as text, never as a link
    assert "https://archive.ics.uci.edu" in page


def test_first_layer_filters_drawn_as_input_images(rendered):
    from robench_plugins.reporters.examples import FirstLayerFilters, filter_images

    run_dir, _ = rendered
    (section,) = FirstLayerFilters().sections(RunStore(run_dir))
    assert [f.get_label() for f in section.figures] == \
        [f"First-layer filters: {d}" for d in DEFENSES]  # first seed of each, no "broken"
    (ax,) = section.figures[0].axes  # one mosaic: 16 tiles of 8x8, 8 per row, 1-px gaps
    assert ax.images[0].get_array().shape == (2 * (8 + 1), 8 * (8 + 1) - 1, 4)
    assert [w.shape for w in filter_images(np.zeros((4, 3, 5, 5)), (3, 32, 32))] == \
        [(3, 5, 5)] * 4
    assert filter_images(np.zeros((4, 10)), (1, 8, 8)) == []


def test_example_grid_marks_success_and_stops_when_all_are_fooled():
    from robench_plugins.reporters.examples import example_grid

    eps = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    noise = np.zeros((2, 1, 4, 4))
    arrays = {"epsilons": eps, "clean": noise, "labels": np.array([-1, -1]),
              "adversarial": np.zeros((7, 2, 1, 4, 4)), "targets": np.array([3, 5]),
              # sample 0 reaches its target from 0.2 on, sample 1 from 0.4 on
              "pred_adv": np.array([[0, 0], [0, 0], [3, 0], [3, 0], [3, 5], [3, 5], [3, 5]])}
    fig = example_grid(arrays, title="fooling", tm="unbounded", eps_scale=255,
                       bounds=(0.0, 1.0), class_names=tuple("abcdef"))
    titles = [(t.get_text(), t.get_color()) for t in fig.axes[0].texts]
    # budgets stop at 0.4, the first that fools both: 0.1, 0.2, 0.3, 0.4 (4 columns)
    assert [t for t, _ in titles[:5]] == ["noise start → d", "ε=25.5/255: ŷ=a",
                                          "ε=51/255: ŷ=d", "ε=76.5/255: ŷ=d",
                                          "ε=102/255: ŷ=d"]
    assert [c for _, c in titles[1:5]] == ["tab:green", "tab:red", "tab:red", "tab:red"]
    assert [c for _, c in titles[6:10]] == ["tab:green", "tab:green", "tab:green", "tab:red"]


def test_every_builtin_metric_renders(tmp_path):
    """The result-frame metrics of the metric plugins, stored as a run would, render
    without a reporter failing (their shapes: per eps, per convention, per sample, over
    seeds)."""
    run_dir = make_run_dir(tmp_path / "run")
    store = RunStore(run_dir)
    registry = build_registry(autoload=False)
    every = []
    for name in registry.names("metric"):
        if name == "spectrum_change":  # reads singular_values rows of cells, not results
            continue
        cls = registry.get("metric", name)
        every.append(cls(cls.Options(baseline="mlp/none")) if name == "paired_difference"
                     else cls())
    metrics, errors = compute(every, store.results)
    assert not errors
    metrics = pd.concat([store.metrics, metrics], ignore_index=True)
    assert {"worst_case_accuracy", "auc_over_seeds", "breakdown_eps"} <= set(metrics["metric"])
    atomic_write_parquet(store.metrics_path, metrics)
    from robench_plugins.reporters import MetricFigures, Summary

    sections = collect_sections(store, ListRegistry(Summary, MetricFigures))
    assert not [s.title for s in sections if s.title.startswith("Reporter")]
    summary = next(s for s in sections if s.title == "Summary")
    quantities = list(summary.tables[0]["quantity"])
    assert {"worst-case AUC · linf [0, 4/16]", "worst-case AUC · l0 [0, 30%]"} <= set(quantities)
    assert not [q for q in quantities if "@" in q]
    # without the worst-case area, the per-eps worst case is summarised at the midpoint
    atomic_write_parquet(store.metrics_path, metrics[metrics["metric"] != "worst_case_auc"])
    (summary,) = Summary().sections(store)
    quantities = list(summary.tables[0]["quantity"])
    assert "worst-case accuracy · linf @ 2/16" in quantities
    assert "worst-case accuracy · l0 @ 10%" in quantities
    assert not any("over_seeds" in q for t in summary.tables for q in t["quantity"])
    # budgets in natural units: fgsm drops "none" to chance (0.1) at 3/16 for both seeds
    # (.9 .6 .3 .1 0 and .8 .5 .2 0 0); "l2" only with seed 1 (.8 .7 .5 .3 .1) at 4/16
    breakdown = summary.tables[0].set_index("quantity").loc["breakdown ε · fgsm"]
    assert breakdown["none"] == "3/16 ± 0"
    assert breakdown["l2"] == "**4/16 (1 of 2 seeds)**"  # the latest breakdown is best
    assert breakdown["pgd"] == ""
    figures = next(s for s in sections if s.title == "Metrics").figures
    assert "worst-case accuracy vs epsilon" in [f.get_label() for f in figures]


@pytest.mark.parametrize("only", ["robust_accuracy", "clean_accuracy", "auc"])
def test_every_reporter_renders_a_run_with_one_metric(tmp_path, only):
    """A run that lists a single metric leaves the other metrics' rows empty: every
    built-in reporter still renders (an empty frame once broke the headline table)."""
    run_dir = make_run_dir(tmp_path / "run")
    store = RunStore(run_dir)
    registry = build_registry(autoload=False)
    metrics, errors = compute([registry.get("metric", only)()], store.results)
    assert not errors and set(metrics["metric"]) <= {only, f"{only}_conditional"} | {
        m for m in metrics["metric"] if m.startswith(only)}
    atomic_write_parquet(store.metrics_path, metrics)
    sections = collect_sections(store, registry)
    assert not [s.title for s in sections if s.title.startswith("Reporter")], \
        [s.text for s in sections if s.title.startswith("Reporter")]


def test_groups_of_an_empty_frame_with_several_keys():
    """Grouping no rows by two keys (e.g. model and defense when a run lists no
    clean_accuracy) gives an empty group column, not an error."""
    from robench_plugins.reporters import _common as C

    empty = pd.DataFrame(columns=["model", "defense", "value"])
    assert C.add_group(empty, ["model", "defense"])["group"].tolist() == []
    two = pd.DataFrame({"model": ["mlp", "cnn"], "defense": ["none", "l2"], "value": [1, 2]})
    assert C.add_group(two, ["model", "defense"])["group"].tolist() == ["mlp / none",
                                                                       "cnn / l2"]


def test_broken_reporter_is_reported_and_others_survive(tmp_path):
    class Broken(Reporter):
        """Always fails."""

        name = "zz_broken"

        def sections(self, run):
            raise RuntimeError("reporter exploded on purpose")

    class Sneaky(Reporter):
        """Tries to inject markup and an external image."""

        name = "zz_sneaky"

        def sections(self, run):
            return [ReportSection(title="Sneaky", order=70,
                                  text="<img src='https://example.org/x.png'> and "
                                       "![remote](https://example.org/y.png) <b>bold</b>")]

    from robench_plugins.reporters import Provenance, Summary

    run_dir = make_run_dir(tmp_path / "run")
    registry = ListRegistry(Broken, Sneaky, Summary, Provenance)
    sections = collect_sections(RunStore(run_dir), registry)
    titles = [s.title for s in sections]
    assert titles == ["Reporter 'zz_broken' failed", "Failures", "Summary", "Sneaky",
                      "Provenance", "Failure tracebacks"]
    assert "reporter exploded on purpose" in sections[0].text
    page = render_report(run_dir, registry=registry, formats=("html",))["html"].read_text()
    assert "reporter exploded on purpose" in page
    assert "<img src='https" not in page and 'src="https' not in page
    assert "&lt;img src=" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert not (run_dir / "report.md").exists()


def test_report_is_reproducible_on_a_copied_run(rendered, tmp_path):
    run_dir, paths = rendered
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report.*", "figures"))
    again = render_report(copy, registry=build_registry(autoload=False))
    assert again["html"].read_bytes() == paths["html"].read_bytes()
    assert again["md"].read_bytes() == paths["md"].read_bytes()
    assert [p.read_bytes() for p in sorted((copy / "figures").glob("*.png"))] == \
        [p.read_bytes() for p in sorted((run_dir / "figures").glob("*.png"))]


def test_comparison_shows_deltas(tmp_path):
    first = make_run_dir(tmp_path / "a" / "run")
    second = make_run_dir(tmp_path / "b" / "run", shift=-0.05, name="shifted")
    paths = render_comparison([first, second], tmp_path / "cmp",
                              registry=build_registry(autoload=False))
    md = paths["md"].read_text()
    assert md.startswith("# robench comparison: run vs run#2")
    eps = ATTACKS["fgsm"]["epsilons"]
    a = np.mean([auc(accuracy("l2", "fgsm", s), eps) for s in SEEDS])
    b = np.mean([auc(accuracy("l2", "fgsm", s, -0.05), eps) for s in SEEDS])
    row = next(line for line in md.splitlines()
               if line.startswith("| l2 | AUC · fgsm [0, 4/16] |"))
    values = [float(v) for v in row.split("|")[3:6]]
    assert values == pytest.approx([a, b, b - a], abs=6e-4)  # 0.4875 may print either way
    assert "training.epochs" in md and "abc123def4567890" in md and "fff000" in md
    assert "worse)." in md  # lower accuracy everywhere in the shifted run
    assert len(list((tmp_path / "cmp" / "figures").glob("*.png"))) == 3  # 2 attacks, training
    assert "data:image/png;base64," in paths["html"].read_text()


def test_comparison_skips_reporters_without_compare_and_reports_broken_ones(tmp_path):
    from robench_plugins.reporters import Provenance

    class NoCompare(Reporter):
        """Single-run sections only."""

        name = "a_single"

        def sections(self, run):
            return [ReportSection(title="Single")]

    class BrokenCompare(NoCompare):
        """Its comparison fails."""

        name = "b_broken"

        def compare(self, runs):
            raise ValueError("cannot compare " + " and ".join(runs))

    first = make_run_dir(tmp_path / "first")
    second = make_run_dir(tmp_path / "second", shift=0.05)
    sections = collect_comparison_sections(
        run_labels([first, second]), ListRegistry(NoCompare, BrokenCompare, Provenance))
    assert [s.title for s in sections] == ["Reporter 'b_broken' failed",
                                           "Provenance across runs"]
    assert "cannot compare first and second" in sections[0].text


def test_builtin_reporters_are_registered_and_light():
    import subprocess
    import sys

    names = build_registry(autoload=False).names("reporter")
    assert names == ["accuracy_curves", "examples", "filters", "headline", "leaderboard",
                     "loss_gradients", "metric_figures", "perturbations", "provenance",
                     "summary", "training_curves"]
    code = ("import sys, robench.report, robench_plugins.reporters; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'seaborn', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_committed_quickstart_report_rebuilds(tmp_path):
    """reports/quickstart is a run directory (without model weights): rendering a copy
    of it elsewhere gives the committed report.md and the same figure files."""
    reference = Path(__file__).resolve().parents[1] / "reports" / "quickstart"
    copy = tmp_path / "copied"
    shutil.copytree(reference, copy, ignore=shutil.ignore_patterns("report.*", "figures"))
    paths = render_report(copy, registry=build_registry(autoload=False), formats=("md",))
    assert paths["md"].read_text() == (reference / "report.md").read_text(), \
        "reports/quickstart is stale: run `robench report reports/quickstart` and commit it"
    assert sorted(p.name for p in (copy / "figures").glob("*.png")) == \
        sorted(p.name for p in (reference / "figures").glob("*.png"))
    # the quickstart's claim: both defenses beat the undefended model under both attacks
    lines = paths["md"].read_text().splitlines()
    header = next(line for line in lines if line.startswith("| quantity |"))
    columns = [c.strip() for c in header.split("|")[2:-1]]
    for attack in ("fgsm", "pgd"):
        row = next(line for line in lines if line.startswith(f"| AUC · {attack} [0, 8/16] |"))
        value = dict(zip(columns, (float(v.strip("* ")) for v in row.split("|")[2:-1])))
        assert value["l2"] > value["none"] and value["pgd"] > value["none"], value


def test_committed_quickstart_numbers_equal_a_fresh_run(tmp_path):
    """Re-run the quickstart (one torch thread, as its file says, on the CPU) and find
    the committed reference's every prediction and metric value again."""
    import torch

    from robench import api

    root = Path(__file__).resolve().parents[1]
    reference = RunStore(root / "reports" / "quickstart")
    threads = torch.get_num_threads()
    try:
        fresh = api.run(root / "benchmarks" / "quickstart.toml", out=tmp_path / "run",
                        device="cpu", progress=False, report=False)
    finally:
        torch.set_num_threads(threads)
    keys = ["cell", "attack", "epsilon", "sample"]
    ours = fresh.results.sort_values(keys, ignore_index=True)
    theirs = reference.results.sort_values(keys, ignore_index=True)
    assert len(ours) == len(theirs) == 3 * 2 * 17 * 450
    for column in ("pred_clean", "pred_adv", "success"):
        assert (ours[column].to_numpy() == theirs[column].to_numpy()).all(), column
    by = ["metric", "cell", "attack", "convention", "epsilon"]
    metrics = {name: frame.metrics.sort_values(by, ignore_index=True)
               for name, frame in (("fresh", fresh), ("committed", reference))}
    np.testing.assert_allclose(metrics["fresh"]["value"], metrics["committed"]["value"],
                               rtol=0, atol=1e-12)


def test_eps_units():
    from robench_plugins.reporters import _common as C

    assert C.format_eps(8 / 255, "linf", 255) == "8/255"
    assert C.format_eps(0.26, "l0", 1) == "26%"
    assert C.format_eps(0.5, "l2", 255) == "0.5"
    assert C.format_eps(0.0, "linf", 255) == "0"
    assert C.format_eps(0.1, "linf", 1) == "0.1"
    assert C.eps_phrase(0.26, "l0", 255) == "at 26% of input values changed"
    assert C.midpoint([0, 0.1, 0.2, 0.3]) == 0.1
    assert C.midpoint(np.arange(0, 129) / 255) == 64 / 255


def test_unknown_format_is_refused(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    with pytest.raises(ValueError, match="unknown report format"):
        render_report(run_dir, registry=build_registry(autoload=False), formats=("pdf",))


def test_missing_run_json_names_the_directory(tmp_path):
    with pytest.raises(RobenchError, match="no run.json"):
        render_report(tmp_path, registry=build_registry(autoload=False))
