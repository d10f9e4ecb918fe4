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


def _one_error_line(capsys, code_expected, code):
    err = capsys.readouterr().err
    assert code == code_expected, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_unexpected_error_is_one_line_exit_1_and_debug_shows_the_traceback(monkeypatch,
                                                                           capsys):
    import robench.cli as cli

    def explode(args):
        raise ZeroDivisionError("deep inside\nover two lines")

    monkeypatch.setattr(cli, "_cmd_validate", explode)
    err = _one_error_line(capsys, 1, main(["validate", QUICKSTART]))
    assert "unexpected error: ZeroDivisionError: deep inside over two lines" in err
    assert "--debug" in err
    assert main(["--debug", "validate", QUICKSTART]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "explode" in err


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_on_the_command_line_is_exit_2(capsys, device):
    err = _one_error_line(capsys, 2, main(["run", QUICKSTART, "--device", device]))
    assert f"--device: expected auto, cpu, cuda, cuda:N or mps, got {device!r}" in err


def test_missing_device_stops_the_run_before_work(tmp_path, capsys):
    import torch

    missing = [d for d, there in (("cuda", torch.cuda.is_available()),
                                  ("cuda:99", torch.cuda.device_count() > 99),
                                  ("mps", torch.backends.mps.is_available())) if not there]
    for device in missing:
        out = tmp_path / device.replace(":", "_")
        err = _one_error_line(capsys, 2, main(["run", QUICKSTART, "--device", device,
                                               "--out", str(out)]))
        assert f"--device: {device!r} requested but this machine has" in err
        assert not out.exists()


def test_output_that_is_a_file_is_exit_2(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    err = _one_error_line(capsys, 2, main(["run", QUICKSTART, "--out", str(afile)]))
    assert "--out: " in err and "is a file, not a directory" in err
    err = _one_error_line(capsys, 2, main(["compare", str(tmp_path), "--out", str(afile)]))
    assert "--out: " in err and "is a file" in err


def test_damaged_runs_are_one_line_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"half": ')
    out = tmp_path / "cmp"
    for argv in (["compare", str(run), "--out", str(out)], ["doctor", str(run)],
                 ["report", str(run)]):
        err = _one_error_line(capsys, 2, main(argv))
        assert str(run / "run.json") in err, (argv, err)


@pytest.mark.parametrize("samples", ["0", "-5", "many"])
def test_doctor_refuses_a_sample_count_below_one(tmp_path, capsys, samples):
    with pytest.raises(SystemExit) as info:
        main(["doctor", str(tmp_path), "--samples", samples])
    assert info.value.code == 2
    assert "--samples: expected a positive integer" in capsys.readouterr().err


def test_doctor_is_a_plugin_command_that_can_be_blocked(capsys):
    with pytest.raises(SystemExit):
        main(["-p", "no:robench_plugins.commands", "doctor", "x"])
    assert "invalid choice: 'doctor'" in capsys.readouterr().err


def test_out_replaces_the_file_output_in_the_path_checks(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    path = tmp_path / "exp.toml"
    path.write_text(open(QUICKSTART).read().replace('output = "runs/quickstart"',
                                                    f'output = "{afile}"'))
    err = _one_error_line(capsys, 2, main(["validate", str(path)]))
    assert "experiment.output: " in err and "is a file" in err
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "run")]) == 0


RERUN = """
[experiment]
name = "rerun"
device = "{device}"
threads = 1

[data]
dataset = "digits"
train_subset = 120
test_subset = 30

[training]
epochs = 1

[[models]]
name = "mlp"
hidden = [8]

[defenses]
none = []

[[attacks]]
name = "fgsm"
attack = "torchattacks.FGSM"
epsilons = [0.1, 0.2]

[metrics]
use = ["clean_accuracy", "robust_accuracy", "auc"]

[report]
formats = ["md", "html"]
"""


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_run_command_on_a_finished_run_imports_no_torch_and_writes_no_report(
        tmp_path, capsys, device):
    import subprocess
    import sys

    path = tmp_path / "exp.toml"
    path.write_text(RERUN.format(device=device))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    written = [out / "report.md", out / "report.html", out / "metrics.parquet",
               *(out / "results").glob("*"), *(out / "figures").glob("*")]
    stamps = {p: p.stat().st_mtime_ns for p in written}
    code = ("import sys, robench.cli as c\n"
            f"code = c.main(['run', {str(path)!r}, '--out', {str(out)!r}, '--no-progress'])\n"
            "heavy = sorted(m for m in ('torch', 'foolbox', 'art', 'torchattacks', "
            "'matplotlib', 'pandas') if m in sys.modules)\n"
            "print('EXIT', code, 'HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "EXIT 0 HEAVY []", proc.stdout
    assert {p: p.stat().st_mtime_ns for p in written} == stamps
