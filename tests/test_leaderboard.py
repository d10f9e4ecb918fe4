"""The AutoAttack standard preset and its leaderboard JSON summary."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
import torch
from torch import nn

import robench
from robench.config import component_spec
from robench.leaderboard import autoattack_standard, leaderboard, summary, write_leaderboard

HOST_KEYS = ("name", "attack", "epsilons", "samples")


@pytest.mark.parametrize("threat_model, norm, eps", [("linf", "Linf", 8 / 255),
                                                     ("l2", "L2", 0.5)])
def test_preset_has_the_reference_settings_and_valid_options(threat_model, norm, eps,
                                                             registry):
    tables = autoattack_standard(threat_model, samples=1000)
    by_name = {t["name"]: t for t in tables}
    assert [t["attack"] for t in tables] == ["torchattacks.APGD", "torchattacks.APGDT",
                                             "torchattacks.FAB", "torchattacks.Square"]
    assert by_name["apgd-ce"]["steps"] == by_name["apgd-t"]["steps"] == 100
    assert by_name["fab-t"]["steps"] == 100 and by_name["fab-t"]["multi_targeted"]
    assert by_name["square"]["n_queries"] == 5000
    assert by_name["square"]["resc_schedule"] is False  # the reference schedule
    for table in tables:
        assert table["norm"] == norm and table["epsilons"] == [eps]
        assert table["n_restarts"] == 1 and table["samples"] == 1000
        component_spec("attack", table["attack"],
                       {k: v for k, v in table.items() if k not in HOST_KEYS},
                       registry=registry)
    with pytest.raises(ValueError, match="linf"):
        autoattack_standard("l0")


def evaluate(tmp_path, registry, epsilons, metrics=("clean_accuracy", "worst_case"),
             **options):
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.rand(30, 4), torch.randint(0, 3, (30,))
    attacks = [{"name": "fgsm", "attack": "torchattacks.FGSM"},
               {"name": "pgd", "attack": "torchattacks.PGD", "steps": 3, "alpha": 0.05}]
    return robench.evaluate(net, x, y, attacks, epsilons, out=tmp_path, device="cpu",
                            metrics=list(metrics), registry=registry, **options)


def test_leaderboard_json_beside_the_report(tmp_path, registry):
    run = evaluate(tmp_path, registry, [0.1, 0.2])
    (entry,) = json.loads(write_leaderboard(run, eps=0.2).read_text())
    at = run.results.query("epsilon == 0.2")
    per_sample = at.groupby("sample").agg(clean=("correct_clean", "all"),
                                          adv=("correct_adv", "all"))
    assert entry["robust_accuracy"] == pytest.approx((per_sample["clean"]
                                                      & per_sample["adv"]).mean())
    assert entry["clean_accuracy"] == pytest.approx(per_sample["clean"].mean())
    assert entry["samples"] == 30 and entry["missing_attacks"] == [] and not entry["notes"]
    assert entry["attacks"]["pgd"]["settings"]["steps"] == 3
    assert entry["attacks"]["pgd"]["library_version"] == metadata.version("torchattacks")
    assert entry["versions"]["torch"] == metadata.version("torch")
    assert (tmp_path / "leaderboard.json").is_file()


def test_entries_are_the_metric_rows(tmp_path, registry):
    """Doctored worst-case and clean-accuracy rows, values no per-sample result gives:
    the entries show them, so nothing is recomputed."""
    run = evaluate(tmp_path, registry, [0.2])
    metrics = run.metrics
    worst = (metrics["metric"] == "worst_case_accuracy") & (
        metrics["convention"] == "unconditional")
    metrics.loc[worst, ["value", "lower", "upper"]] = [0.123, 0.1, 0.2]
    metrics.loc[metrics["metric"] == "clean_accuracy", "value"] = 0.456
    (entry,) = summary(metrics, run.record)
    assert entry["robust_accuracy"] == 0.123 and entry["robust_interval"] == [0.1, 0.2]
    assert entry["clean_accuracy"] == 0.456


def test_a_metric_the_run_did_not_use_is_named_not_computed(tmp_path, registry):
    run = evaluate(tmp_path, registry, [0.2], metrics=("robust_accuracy",))
    (entry,) = leaderboard(run)
    assert entry["robust_accuracy"] is None and entry["clean_accuracy"] is None
    assert any("worst_case" in note and "[metrics] use" in note for note in entry["notes"])
    assert any("clean_accuracy" in note for note in entry["notes"])


def test_an_ensemble_of_one_reads_the_robust_accuracy_row(tmp_path, registry):
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.rand(30, 4), torch.randint(0, 3, (30,))
    run = robench.evaluate(net, x, y, [{"name": "fgsm", "attack": "torchattacks.FGSM"}],
                           [0.2], out=tmp_path, device="cpu", registry=registry,
                           metrics=["robust_accuracy"])
    (entry,) = leaderboard(run)
    results = run.results
    expected = (results["correct_clean"] & results["correct_adv"]).mean()
    assert entry["robust_accuracy"] == pytest.approx(expected)
    assert entry["notes"] == ["the clean_accuracy metric is not in the run's [metrics] use"]


@pytest.mark.parametrize("stem, eps, samples", [("autoattack_standard", "8/255", 1000),
                                                ("autoattack_standard_small", "2/16", 50)])
def test_benchmark_files_spell_out_the_preset(stem, eps, samples):
    import tomllib
    from pathlib import Path

    from robench.options import parse_number

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{stem}.toml"
    written = tomllib.loads(path.read_text())["attacks"]
    for table in written:
        table["epsilons"] = [parse_number(e, "epsilons") for e in table["epsilons"]]
    assert written == autoattack_standard("linf", parse_number(eps, "eps"), samples)
