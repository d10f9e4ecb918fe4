"""Every catalogued library attack runs through its adapter on a tiny input (slow: the
Brendel-Bethge attacks compile with numba first)."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import digits_mlp, first_test_digits, make

from robench_plugins.attacks import catalogue

TINY = {"steps": 2, "max_iter": 2, "n_queries": 5, "nb_iter": 1, "query_limit": 50,
        "max_eval": 20, "init_eval": 5, "binary_search_steps": 1, "restarts": 1,
        "max_iterations": 10, "num_trial": 2, "repeats": 2, "popsize": 2, "directions": 5,
        "n_restarts": 1, "nb_random_init": 1, "nb_restarts": 1, "init_size": 5,
        "sample_size": 5, "max_halving": 1, "max_doubling": 1, "lr_num_decay": 2,
        "num_iter_set": 2, "k": 5, "sub_dim": 2, "eot_iter": 1, "noise_batch_size": 2,
        "nb_sample": 4, "population": 4, "candidates": 3, "max_gradient_eval_steps": 20,
        "initial_gradient_eval_steps": 5}
"""Option values small enough for a smoke run, wherever an attack has the option."""

LIBRARY_LIMITS = {
    "torchattacks.PIFGSM": "its kernels assume 3-channel images",
    "torchattacks.PIFGSMPP": "its kernels assume 3-channel images",
    "torchattacks.TIFGSM": "its kernels assume 3-channel images",
    "art.AutoAttack": "ART imports the uninstalled package `multiprocess`",
    "art.GeoDA": "its query schedule fails below a few hundred iterations",
}
"""Entries that cannot run on 1-channel 8x8 digits with tiny budgets, and why."""

BUDGET = {"linf": 0.1, "l2": 1.0, "l1": 5.0, "l0": 0.1}

ENTRIES = [e for e in catalogue.load()["attacks"] if not e["alias_of"]]


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e['library']}.{e['name']}" for e in ENTRIES])
def test_catalogued_attack_runs(entry):
    name = f"{entry['library']}.{entry['name']}"
    if name in LIBRARY_LIMITS:
        pytest.skip(LIBRARY_LIMITS[name])
    options = {o["name"]: TINY[o["name"]] for o in entry["options"] if o["name"] in TINY}
    options.update({o["name"]: 1 for o in entry["options"] if o["required"]})
    model, (x, y) = digits_mlp(), first_test_digits(3)
    targets = (y + 1) % 10 if entry["targeted_only"] else None
    eps = BUDGET[entry["threat_model"]]
    result = make(name, **options).run(model, x, y, [0.0, eps], bounds=(0.0, 1.0),
                                       targets=targets, generator=torch.Generator().manual_seed(0))
    assert result.library == entry["library"] and result.library_version
    assert torch.equal(result.adversarials[0], x)
    assert result.adversarials[1].shape == x.shape
    assert 0 <= result.adversarials[1].min() and result.adversarials[1].max() <= 1
