"""Reports show metric rows and nothing else: one definition per number; the headline
section; the choice of reporters; values from the run never become live links."""

from __future__ import annotations

import ast
import html.parser
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import ATTACKS, DEFENSES, SEEDS, accuracy, make_run_dir

from robench.plugins import build_registry
from robench.report import collect_sections, escape_markdown, render_report, safe_url
from robench.results import RunStore, atomic_write_parquet

REPORTERS = Path(__file__).resolve().parents[1] / "plugins" / "reporters"

PER_SAMPLE = {"correct_adv", "correct_clean", "pred_clean", "robust_samples",
              "accuracy_from_samples", "clean_samples", "worst_case_samples"}
"""Per-sample columns and the metrics' per-sample helpers: a reporter that touches them
is computing a number that a metric defines."""


def test_no_reporter_reads_per_sample_results():
    for path in sorted(REPORTERS.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                  and isinstance(n.value, str)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                  for a in n.names}
        assert not names & PER_SAMPLE, (path.name, names & PER_SAMPLE)
        assert "results" not in {n.attr for n in ast.walk(tree)
                                 if isinstance(n, ast.Attribute)}, path.name
        assert "read_run" not in path.read_text(), path.name  # run.json: RunStore.record()


@pytest.fixture(scope="module")
def doctored(tmp_path_factory):
    """The fixture run with every robust_accuracy row replaced by value / 2 + 0.01, a
    number the per-sample results cannot give: whatever a reporter shows of robust
    accuracy must follow."""
    run_dir = make_run_dir(tmp_path_factory.mktemp("numbers") / "run")
    store = RunStore(run_dir)
    metrics = store.metrics
    robust = metrics["metric"] == "robust_accuracy"
    metrics.loc[robust, "value"] = metrics.loc[robust, "value"] / 2 + 0.01
    metrics.loc[robust, ["lower", "upper"]] = np.nan
    atomic_write_parquet(store.metrics_path, metrics)
    return run_dir


def _sections(run_dir, *names):
    from robench_plugins import reporters

    classes = {cls.name: cls for cls in (reporters.Headline, reporters.Summary,
                                         reporters.AccuracyCurves, reporters.Provenance)}

    class Only:
        def names(self, kind):
            return sorted(names)

        def get(self, kind, name):
            return classes[name]

    return {s.title: s for s in collect_sections(RunStore(run_dir), Only())}


def doctored_mean(defense, attack, eps_index):
    """Mean over the seeds that ran of the doctored unconditional robust accuracy."""
    seeds = [s for s in SEEDS if not (defense == "pgd" and attack == "swap" and s == 1)]
    return np.mean([accuracy(defense, attack, s)[eps_index] / 2 + 0.01 for s in seeds])


def test_curves_and_sentences_show_the_metric_rows(doctored):
    sections = _sections(doctored, "accuracy_curves", "summary")
    fgsm = sections["Accuracy vs perturbation budget"].tables[0].set_index("budget")
    for defense in DEFENSES:
        for i, eps in enumerate(ATTACKS["fgsm"]["epsilons"]):
            label = "0" if eps == 0 else f"{round(eps * 16)}/16"
            assert fgsm.at[label, defense] == f"{100 * doctored_mean(defense, 'fgsm', i):.1f}%"
    text = sections["Summary"].text
    assert f"**pgd** keeps {100 * doctored_mean('pgd', 'fgsm', 2):.1f}%" in text


def test_headline_figure_per_configuration_and_table_at_the_named_eps(doctored):
    record = json.loads((doctored / "run.json").read_text())
    record["experiment"]["config"]["report"] = {"eps": ["2/16", 0.1]}
    (doctored / "run.json").write_text(json.dumps(record))
    section = _sections(doctored, "headline")["Robustness at a glance"]
    assert [f.get_label().split(":")[0] for f in section.figures] == \
        [f"Robust accuracy of {d}" for d in DEFENSES]
    ax = section.figures[0].axes[0]  # linf panel of "none": fgsm, then the worst case
    widths = {line.get_label(): line.get_linewidth() for line in ax.get_lines()}
    assert widths["worst case"] > widths["fgsm"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["fgsm", "worst case",
                                                                   "chance"]
    table = section.tables[0].set_index("configuration")
    assert list(table.columns) == ["clean accuracy", "fgsm @ 2/16", "swap @ 10%",
                                   "worst case @ 2/16", "worst case @ 10%"]
    for defense in DEFENSES:
        cell = table.at[defense, "fgsm @ 2/16"].strip("*").split(" ")[0]
        assert cell == f"{100 * doctored_mean(defense, 'fgsm', 2):.1f}%"
    # two seeds: t-intervals over seeds; pgd is best at 2/16, the others' intervals
    # (none: 14.5 +- 12.7 * 5 points) reach it or not
    assert table.at["pgd", "fgsm @ 2/16"].startswith("**")
    assert "Budgets ε are written as k/16" in section.text


def test_headline_marks_differences_the_paired_metric_finds_not_significant(doctored):
    store = RunStore(doctored)
    metrics = store.metrics
    paired = pd.DataFrame([
        {"metric": "paired_robust_accuracy_difference", "model": "mlp", "defense": d,
         "baseline": "mlp/pgd", "attack": "fgsm", "epsilon": 2 / 16, "value": -0.1,
         "lower": -0.2, "upper": up, "significant": up < 0}
        for d, up in (("none", -0.05), ("l2", 0.02))])
    atomic_write_parquet(store.metrics_path, pd.concat([metrics, paired], ignore_index=True))
    try:
        table = _sections(doctored, "headline")["Robustness at a glance"].tables[0]
    finally:
        atomic_write_parquet(store.metrics_path, metrics)
    column = table.set_index("configuration")["fgsm @ 2/16"]
    assert column["l2"].endswith(" not significant")
    assert not column["none"].endswith("not significant")
    assert column["pgd"].endswith("(baseline)")


def test_report_reporters_choose_the_sections_and_filters_are_opt_in(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    registry = build_registry(autoload=False)
    titles = [s.title for s in collect_sections(RunStore(run_dir), registry)]
    assert titles[:3] == ["Failures", "Robustness at a glance", "Summary"]
    assert "First-layer filters" not in titles
    record = json.loads((run_dir / "run.json").read_text())
    record["experiment"]["config"]["report"] = {"reporters": ["headline", "filters"]}
    (run_dir / "run.json").write_text(json.dumps(record))
    titles = [s.title for s in collect_sections(RunStore(run_dir), registry)]
    assert titles == ["Robustness at a glance", "First-layer filters"]


EVIL = "x\n\n[click](javascript:alert(1)) <a href=\"javascript:alert(2)\">a</a> " \
       "[r]: javascript:alert(3)\n\n<javascript:alert(4)>"


class Links(html.parser.HTMLParser):
    """Every URL of an href/src attribute, with its tag."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [(tag, v) for k, v in attrs if k in ("href", "src", "action")]


def live_links(page: str) -> list[str]:
    parser = Links()
    parser.feed(page)
    return [url for tag, url in parser.urls
            if not (safe_url(url) or (tag == "img" and url.startswith("data:image/png")))]


def test_values_and_file_names_from_the_run_never_become_links(tmp_path):
    import markdown

    run_dir = make_run_dir(tmp_path / "run")
    record = json.loads((run_dir / "run.json").read_text())
    record["experiment"]["name"] = EVIL
    record["experiment"]["file"] = EVIL
    record["git_commit"] = EVIL
    record["data"]["source"] = EVIL
    record["metric_errors"][EVIL] = EVIL
    unit = next(u for u in record["units"].values() if u["status"] == "failed")
    unit["error"] = unit["traceback"] = EVIL
    record["cells"]["digits-mlp-broken-s0"]["cell"]["defense"] = EVIL
    (run_dir / "run.json").write_text(json.dumps(record))
    # a stored artifact whose file name (an attack label) carries the same text
    art = run_dir / "artifacts" / "digits-mlp-none-s0"
    (art / "fgsm.npz").rename(art / f"{EVIL.replace('/', '_')}.npz")
    paths = render_report(run_dir, registry=build_registry(autoload=False))
    page, md = paths["html"].read_text(), paths["md"].read_text()
    assert "alert(1)" in page and "alert(1)" in md  # shown, as text
    assert live_links(page) == []
    # report.md as a Markdown viewer renders it, raw HTML allowed
    assert live_links(markdown.markdown(md, extensions=["tables", "fenced_code"])) == []


def test_escape_markdown_keeps_text_and_defuses_markup():
    import markdown

    for text in ("AUC [0, 8/255]", "a_b*c*", "x | y", "<b>bold</b>", "[t](javascript:x)"):
        rendered = markdown.markdown(escape_markdown(text), extensions=["tables"])
        assert html.unescape(re.sub(r"</?p>", "", rendered)) == text
    assert escape_markdown("two\n\nlines") == "two lines"
    assert not safe_url("JaVaScRiPt:alert(1)") and not safe_url(" java\nscript:x")
    assert safe_url("https://example.org") and safe_url("#section") and safe_url("a/b.png")
