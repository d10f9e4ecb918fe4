"""The command line: exit codes, one-line errors, listing and dry runs."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from robench.cli import main

QUICKSTART = str(REPO / "benchmarks" / "quickstart.toml")


def test_validate_and_dry_run(capsys):
    assert main(["validate", QUICKSTART]) == 0
    assert "ok (3 cells, 6 attack sweeps)" in capsys.readouterr().out
    assert main(["run", QUICKSTART, "--dry-run", "--out", "/nonexistent/never-written"]) == 0
    out = capsys.readouterr().out
    assert "cell mlp--pgd--s0" in out and "attack pgd: foolbox.LinfPGD, 17 budgets 0..0.5" in out
    assert "rough cost:" in out


@pytest.mark.parametrize("old, new, words", [
    ("[data]", "[dat]", "unknown key (did you mean 'data'?)"),
    ('"foolbox.LinfPGD"', '"foolbox.LinfPDG"', "did you mean 'foolbox.LinfPGD'"),
    ('step = "1/32" }\n\n[metrics]', 'step = "1/0" }\n\n[metrics]',
     "attacks[1].epsilons.step: expected a number or a fraction such as '8/255', got '1/0'"),
    ("steps = 20", "stepz = 20", "attacks[1].stepz: attack 'foolbox.LinfPGD': unknown option "
                                 "(did you mean 'steps'?)"),
])
def test_bad_file_is_one_line_and_exit_2(write_toml, capsys, old, new, words):
    text = open(QUICKSTART).read()
    assert old in text
    path = write_toml(text.replace(old, new))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"robench: error: {path}:") and words in err


def test_missing_file_exit_2(capsys, tmp_path):
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "no such experiment file" in capsys.readouterr().err


def test_plugins_json_lists_each_kind(capsys):
    assert main(["plugins", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    names = {(i["kind"], i["name"]) for i in items}
    assert {("dataset", "digits"), ("model", "mlp"), ("defense", "weight_decay"),
            ("defense", "adversarial_training"), ("attack", "torchattacks.PGD"),
            ("attack", "foolbox.LinfPGD"), ("metric", "auc"), ("executor", "local")} <= names
    pgd = next(i for i in items if i["name"] == "foolbox.LinfPGD")
    assert (pgd["library"], pgd["threat_model"], pgd["package"]) == ("foolbox", "linf", "robench")


def test_report_of_missing_run_is_exit_2(capsys, tmp_path):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a robench run directory" in capsys.readouterr().err


def test_doctor_probes_every_cached_model(tmp_path, capsys):
    text = open(QUICKSTART).read().replace("epochs = 30", "epochs = 3")
    text = text[:text.index("[[defenses.pgd]]")] + text[text.index("[[attacks]]"):]
    path = tmp_path / "exp.toml"
    path.write_text(text.replace('step = "1/32"', 'step = "1/8"'))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress",
                 "--no-report"]) == 0
    capsys.readouterr()
    code = main(["doctor", str(tmp_path / "run"), "--samples", "100"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0, out  # undefended and weight-decayed MLPs do not mask gradients
    checks = {line.split(": ")[1] for line in out}
    assert checks == {"unbounded_pgd", "black_box_stronger", "more_steps_weaker"}
    assert {line.split(":")[0] for line in out} == {"mlp--none--s0", "mlp--l2--s0"}
    assert all(": ok: " in line for line in out)
