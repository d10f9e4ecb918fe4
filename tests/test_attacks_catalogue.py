"""The committed attack catalogue: no drift from the pinned libraries, cheap listing,
and one typed component per entry."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
from attack_fixtures import builtin_registry

from robench.errors import ConfigError
from robench.options import parse_options
from robench_plugins.attacks import catalogue


def test_catalogue_matches_installed_libraries():
    """Regenerating from the installed libraries gives the committed file, byte for byte."""
    committed = catalogue.CATALOGUE_PATH.read_text(encoding="utf-8")
    regenerated = catalogue.dumps(catalogue.generate())
    assert regenerated == committed, (
        "catalogue.json is stale: run `python -m robench_plugins.attacks.catalogue --write`")


def test_listing_imports_no_heavy_library():
    code = ("import sys; from robench.plugins import build_registry; "
            "r = build_registry(autoload=False); "
            "print(len(r.names('attack'))); "
            "print(sorted(m for m in ('torch', 'foolbox', 'torchattacks', 'art') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert int(out[0]) > 100
    assert out[1] == "[]"


def test_every_library_and_custom_attack_is_registered():
    names = set(builtin_registry().names("attack"))
    expected = {"torchattacks.FGSM", "torchattacks.PGD", "torchattacks.APGD",
                "torchattacks.AutoAttack", "torchattacks.CW", "torchattacks.DeepFool",
                "torchattacks.Square", "torchattacks.JSMA",
                "foolbox.LinfPGD", "foolbox.FGSM", "foolbox.L2DeepFoolAttack",
                "foolbox.L2CarliniWagnerAttack", "foolbox.L0BrendelBethgeAttack",
                "foolbox.SaltAndPepperNoiseAttack",
                "art.FastGradientMethod", "art.ProjectedGradientDescent", "art.DeepFool",
                "art.SaliencyMapMethod", "art.AutoAttack", "art.AutoProjectedGradientDescent",
                "art.SquareAttack", "art.CarliniL2Method",
                "pixel_swap", "fooling_images", "l0_weights", "jsma"}
    assert expected <= names
    cat = catalogue.load()
    assert len([n for n in names if "." in n]) == len(cat["attacks"])


def test_entries_record_threat_model_budget_and_targets():
    by_name = {f"{e['library']}.{e['name']}": e for e in catalogue.load()["attacks"]}
    assert by_name["foolbox.LinfPGD"]["alias_of"] == "LinfProjectedGradientDescentAttack"
    assert (by_name["foolbox.L0BrendelBethgeAttack"]["threat_model"],
            by_name["foolbox.L0BrendelBethgeAttack"]["minimal"]) == ("l0", True)
    assert by_name["foolbox.SaltAndPepperNoiseAttack"]["threat_model"] == "l2"  # foolbox's L2
    assert by_name["torchattacks.PGD"]["eps_param"] == "eps"
    deepfool = by_name["torchattacks.DeepFool"]
    assert deepfool["minimal"] and not deepfool["targeted"]
    assert by_name["art.SaliencyMapMethod"]["targeted_only"]
    assert by_name["torchattacks.JSMA"]["targeted_only"]
    assert by_name["art.ProjectedGradientDescent"]["norm_option"] == "norm"


def test_options_are_typed_and_unknown_names_get_a_close_match():
    cls = builtin_registry().get("attack", "torchattacks.PGD")
    opts = parse_options(cls.Options, {"steps": 7, "alpha": "2/255", "random_start": False})
    assert (opts.steps, opts.random_start) == (7, False)
    assert abs(opts.alpha - 2 / 255) < 1e-12
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        parse_options(cls.Options, {"step": 7})
    with pytest.raises(ConfigError, match="random_start"):
        parse_options(cls.Options, {"random_start": "yes"})
    fb = builtin_registry().get("attack", "foolbox.LinfPGD")
    assert parse_options(fb.Options, {"abs_stepsize": 0.01}).abs_stepsize == 0.01


def test_norm_option_sets_the_instance_threat_model():
    reg = builtin_registry()
    for name, raw, expected in [("torchattacks.APGD", {"norm": "L2"}, "l2"),
                                ("art.ProjectedGradientDescent", {"norm": 2}, "l2"),
                                ("art.ProjectedGradientDescent", {}, "linf"),
                                ("art.FastGradientMethod", {"norm": "inf"}, "linf")]:
        cls = reg.get("attack", name)
        attack = cls(parse_options(cls.Options, raw))
        assert attack.threat_model.value == expected  # what the host reads: the instance
        assert type(attack) is cls and attack.name == name  # no class swap
        again = pickle.loads(pickle.dumps(attack))
        assert (type(again), again.options) == (type(attack), attack.options)
        assert again.threat_model.value == expected
    cls = reg.get("attack", "torchattacks.APGD")
    with pytest.raises(ConfigError):
        parse_options(cls.Options, {"norm": "L7"})
    cls = reg.get("attack", "art.ProjectedGradientDescent")
    with pytest.raises(ConfigError, match="norm must be one of"):
        parse_options(cls.Options, {"norm": 3})


def test_every_entry_builds_with_default_options():
    reg = builtin_registry()
    for entry in catalogue.load()["attacks"]:
        cls = reg.get("attack", f"{entry['library']}.{entry['name']}")
        required = {o["name"]: 1 for o in entry["options"] if o["required"]}
        attack = cls(parse_options(cls.Options, required))
        assert attack.threat_model.value == entry["threat_model"]
        assert json.dumps(cls.describe())  # JSON-friendly for `robench plugins --json`
