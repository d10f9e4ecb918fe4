"""A run made with overrides keeps the file as written and records the overrides."""

from __future__ import annotations

import json
import textwrap

from conftest import SMOKE

from robench import api

OVERRIDES = {"training.epochs": 1, "attacks[0].epsilons": [0, 0.25]}


def test_overrides_are_in_run_json_and_in_the_report(tmp_path, registry):
    path = tmp_path / "exp.toml"
    path.write_text(textwrap.dedent(SMOKE))
    run = api.run(path, out=tmp_path / "run", registry=registry, progress=False,
                  overrides=OVERRIDES)
    assert (run.path / "experiment.toml").read_text() == path.read_text()  # as written
    recorded = json.loads((run.path / "run.json").read_text())["overrides"]
    assert recorded == OVERRIDES
    assert run.record.experiment.config["training"]["epochs"] == 1  # applied
    report = run.report(formats=("md",))["md"].read_text()
    provenance = report[report.index("Provenance"):]
    assert 'training.epochs = 1' in provenance
    assert 'attacks[0].epsilons = [0, 0.25]' in provenance


def test_a_run_without_overrides_records_none(tmp_path, registry):
    path = tmp_path / "exp.toml"
    path.write_text(textwrap.dedent(SMOKE).replace("epochs = 3", "epochs = 1"))
    run = api.run(path, out=tmp_path / "run", registry=registry, progress=False)
    assert "overrides" not in run.record.extra
    report = run.report(formats=("md",))["md"].read_text()
    assert "**overrides" not in report[report.index("Provenance"):]
