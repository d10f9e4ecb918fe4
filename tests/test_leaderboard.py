"""The AutoAttack standard preset and the leaderboard JSON summary."""

from __future__ import annotations

import json
from importlib import metadata

import pandas as pd
import pytest
import torch
from torch import nn

import robench
from robench.config import component_spec
from robench.leaderboard import autoattack_standard, summary, write_leaderboard

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


def frame(rows):
    base = {"dataset": "d", "model": "m", "defense": "none", "seed": 0, "source": "data",
            "epsilon": 0.1, "threat_model": "linf", "library": "lib",
            "library_version": "1"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_robust_means_every_attack_failed_and_clean_mistakes_are_not_robust():
    rows = []
    outcomes = {"a": [True, False, True, False], "b": [True, True, False, False]}
    for attack, correct in outcomes.items():
        for sample, ok in enumerate(correct):
            rows.append({"attack": attack, "sample": sample, "correct_adv": ok,
                         "correct_clean": sample != 3})
    (entry,) = summary(frame(rows))
    assert entry["samples"] == 4
    assert entry["clean_accuracy"] == 0.75 and entry["robust_accuracy"] == 0.25
    assert sorted(entry["attacks"]) == ["a", "b"] and entry["epsilon"] == 0.1
    with pytest.raises(ValueError, match="no results for attack"):
        summary(frame(rows), attacks=["a", "c"])


def test_leaderboard_json_beside_the_report(tmp_path, registry):
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.rand(30, 4), torch.randint(0, 3, (30,))
    attacks = [{"name": "fgsm", "attack": "torchattacks.FGSM"},
               {"name": "pgd", "attack": "torchattacks.PGD", "steps": 3, "alpha": 0.05}]
    run = robench.evaluate(net, x, y, attacks, [0.1, 0.2], out=tmp_path, device="cpu",
                           registry=registry)
    (entry,) = json.loads(write_leaderboard(run, eps=0.2).read_text())
    at = run.results.query("epsilon == 0.2")
    robust = at.groupby("sample")["correct_adv"].all().mean()
    assert entry["robust_accuracy"] == pytest.approx(robust)
    assert entry["attacks"]["pgd"]["settings"]["steps"] == 3
    assert entry["versions"]["torch"] == metadata.version("torch")
    assert (tmp_path / "leaderboard.json").is_file()


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
