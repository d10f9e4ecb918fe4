"""The attack base classes own the sweep: eps = 0, projection, thresholding, chunks,
seeds shared by every model of one seed, transfer sources, the incremental sweep, and
the deprecation path for attacks written against ``Attack.run``."""

from __future__ import annotations

import dataclasses
import pickle
import textwrap
import warnings

import pandas as pd
import pytest
import torch
from attack_fixtures import digits_mlp, first_test_digits, linear_two_logit, make

from robench import (
    Attack,
    AttackProperties,
    AttackResult,
    FixedBudgetAttack,
    MinimalAttack,
    ThreatModel,
)

BOUNDS = (0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    batch_size: int = 0
    incremental: bool = False


class NoisySign(FixedBudgetAttack):
    """Steps 3 * eps along random signs (over budget on purpose) and logs each call."""

    name = "tests.noisy_sign"
    library = "tests"
    Options = BatchOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.calls: list[tuple[float, int]] = []

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        self.calls.append((eps, len(x)))
        signs = torch.randint(0, 2, x.shape, generator=generator).float() * 2 - 1
        return x + 3 * eps * signs


class LinearFGSM(FixedBudgetAttack):
    """FGSM on a two-logit linear model (closed form), logging the inputs it is given."""

    name = "tests.linear_fgsm"
    Options = BatchOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.seen: list[torch.Tensor] = []

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        self.seen.append(x.clone())
        w = model.weight[1] - model.weight[0]
        s = (2 * y - 1).float().unsqueeze(1)
        return x - eps * s * w.sign()


class Candidates(MinimalAttack):
    """Returns fixed candidates (set on the instance) and counts its searches."""

    name = "tests.candidates"
    threat_model = ThreatModel.L2

    def __init__(self, options=None):
        super().__init__(options)
        self.candidates: torch.Tensor | None = None
        self.searches = 0

    def search(self, model, x, y, *, bounds, targets=None, generator=None):
        self.searches += 1
        return self.candidates.clone()


def data(n=40, d=20):
    x = torch.rand(n, d, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    return x, (x.sum(1) > d / 2).long()


def test_fixed_budget_sweep_projects_onto_the_ball_and_bounds_and_keeps_eps0_clean():
    x, y = data()
    attack = NoisySign()
    epsilons = [0.0, 0.05, 0.5]
    result = attack.run(linear_two_logit(), x, y, epsilons, bounds=BOUNDS,
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.adversarials[0], x)
    for eps, adv in zip(epsilons, result.adversarials):
        assert (adv - x).abs().max() <= eps + 1e-7
        assert adv.min() >= 0 and adv.max() <= 1
    # eps = 0.05 is far from the bounds: the clipped step is exactly eps on every value
    assert torch.allclose((result.adversarials[1] - x).abs(), torch.full_like(x, 0.05))
    assert [c[0] for c in attack.calls] == [0.05, 0.5]  # never called at eps = 0
    assert result.library == "tests" and result.details["incremental"] is False


def test_chunks_are_seeded_by_index_so_every_model_gets_the_same_randomness():
    x, y = data(n=25)
    attack = NoisySign(BatchOptions(batch_size=10))

    def run(model, seed):
        return attack.run(model, x, y, [0.01], bounds=BOUNDS,
                          generator=torch.Generator().manual_seed(seed)).adversarials[0]

    a, b = run(linear_two_logit(seed=0), 7), run(linear_two_logit(seed=1), 7)
    assert torch.equal(a, b)  # two models, one seed: the same perturbation
    assert not torch.equal(a, run(linear_two_logit(seed=0), 8))
    assert [n for _, n in attack.calls[:3]] == [10, 10, 5]
    steps = (a - x).sign()
    assert not torch.equal(steps[:5], steps[10:15])  # chunks differ: seeded by index
    model = linear_two_logit()  # building it draws from the global RNG
    state = torch.random.get_rng_state()
    run(model, 7)
    assert torch.equal(state, torch.random.get_rng_state())


def test_transfer_crafts_on_the_source_and_targets_are_refused_when_unsupported():
    x, y = data()
    model, source = linear_two_logit(seed=0), linear_two_logit(seed=1)
    crafted = LinearFGSM().run(model, x, y, [0.1], bounds=BOUNDS, source_model=source)
    direct = LinearFGSM().run(source, x, y, [0.1], bounds=BOUNDS)
    assert torch.equal(crafted.adversarials[0], direct.adversarials[0])
    assert crafted.details["crafted_on"] == "source_model"
    with pytest.raises(ValueError, match="no targeted mode"):
        LinearFGSM().run(model, x, y, [0.1], bounds=BOUNDS, targets=1 - y)
    with pytest.raises(ValueError, match="outside the data bounds"):
        LinearFGSM().run(model, x + 1, y, [0.1], bounds=BOUNDS)


def test_incremental_sweep_attacks_only_unbroken_inputs_and_keeps_earlier_adversarials():
    x, y = data(n=60)
    model = linear_two_logit()
    y = model(x).argmax(1)
    y[:5] = 1 - y[:5]  # five inputs misclassified from the start
    epsilons = [0.2, 0.0, 0.05, 0.1]  # any order
    attack = LinearFGSM(BatchOptions(incremental=True))
    result = attack.run(model, x, y, epsilons, bounds=BOUNDS)
    full = LinearFGSM().run(model, x, y, epsilons, bounds=BOUNDS)
    assert result.details["incremental"] is True
    by_eps = dict(zip(epsilons, result.adversarials))
    assert torch.equal(by_eps[0.0], x)
    broken = model(x).argmax(1) != y
    assert broken[:5].all()
    for eps, seen in zip([0.05, 0.1, 0.2], attack.seen):
        assert len(seen) == int((~broken).sum())  # only the inputs not yet broken
        adv = by_eps[eps]
        assert torch.equal(adv[broken], by_eps[{0.05: 0.0, 0.1: 0.05, 0.2: 0.1}[eps]][broken])
        newly = (model(adv).argmax(1) != y) & ~broken
        assert torch.equal(adv[newly], dict(zip(epsilons, full.adversarials))[eps][newly])
        broken = broken | newly
    assert len(attack.seen) == 3


def test_minimal_attack_keeps_a_candidate_only_if_it_fools_the_crafting_model_within_eps():
    d = 20
    x, _ = data(n=3, d=d)
    source, model = linear_two_logit(d, seed=0), linear_two_logit(d, seed=1)
    y = source(x).argmax(1)
    w = source.weight[1] - source.weight[0]
    direction = ((1 - 2 * y).float().unsqueeze(1) * w / w.norm())
    margin = (source(x)[:, 1] - source(x)[:, 0]).abs() / w.norm()  # L2 distance to the boundary
    # input 0: just across the source's boundary; input 1: not across; input 2: far across
    steps = torch.stack([margin[0] * 1.01, margin[1] * 0.5, margin[2] * 3])
    attack = Candidates()
    attack.candidates = x + steps.unsqueeze(1) * direction
    epsilons = [0.0, float(steps[0]) + 1e-4, float(steps[2]) + 1e-4]
    result = attack.run(model, x, y, epsilons, bounds=(-10.0, 10.0), source_model=source)
    assert attack.searches == 1
    dist = result.details["minimal_distances"]
    assert torch.isinf(dist[1]) and torch.allclose(dist[[0, 2]], steps[[0, 2]], rtol=1e-4)
    kept = [(adv != x).any(1).tolist() for adv in result.adversarials]
    assert kept == [[False, False, False], [True, False, False], [True, False, True]]


def test_run_is_final_and_overriding_it_on_attack_is_deprecated():
    with pytest.raises(TypeError, match="final run"):
        class Bad(FixedBudgetAttack):
            def run(self, *args, **kwargs):
                return None

    with pytest.warns(DeprecationWarning, match="sweeps_itself"):
        class Old(Attack):
            name = "tests.old"

            def run(self, model, x, y, epsilons, **kwargs):
                return AttackResult(epsilons=list(epsilons), adversarials=[x for _ in epsilons])

    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class OnePass(Attack):
            name = "tests.one_pass"
            sweeps_itself = True

            def run(self, model, x, y, epsilons, **kwargs):
                return self.result(epsilons, adversarials=[x for _ in epsilons])

    x, y = data(n=4)
    old = Old().run(linear_two_logit(), x, y, [0.1], bounds=BOUNDS)
    assert old.library is None  # left to the registry: never labelled "robench"
    assert OnePass().run(linear_two_logit(), x, y, [0.1], bounds=BOUNDS).library is None


def test_threat_model_is_read_from_the_instance_and_survives_pickling():
    attack = make("art.ProjectedGradientDescent", norm=2)
    assert attack.threat_model is ThreatModel.L2
    assert type(attack).threat_model is ThreatModel.LINF  # the class is not swapped
    again = pickle.loads(pickle.dumps(attack))
    assert type(again) is type(attack) and again.threat_model is ThreatModel.L2
    assert make("art.ProjectedGradientDescent").threat_model is ThreatModel.LINF


def test_library_adapters_are_built_on_the_base_classes():
    assert isinstance(make("torchattacks.PGD"), FixedBudgetAttack)
    assert isinstance(make("foolbox.L2DeepFoolAttack"), MinimalAttack)
    assert make("torchattacks.PGD", incremental=True).is_incremental()
    assert "incremental" not in make("torchattacks.PGD", incremental=True).library_kwargs()


def test_library_incremental_sweep_is_recorded_and_never_weaker_than_clean():
    model, (x, y) = digits_mlp(), first_test_digits(40)
    epsilons = [0.0, 0.05, 0.1, 0.2]
    result = make("torchattacks.FGSM", incremental=True).run(model, x, y, epsilons,
                                                             bounds=BOUNDS)
    assert result.details["incremental"] is True
    wrong = [(model(a).argmax(1) != y) for a in result.adversarials]
    for before, after in zip(wrong, wrong[1:]):
        assert (after | ~before).all()  # an input broken at a smaller eps stays broken


def test_properties_default_per_base_class():
    assert MinimalAttack.properties == AttackProperties(monotone=True)
    assert FixedBudgetAttack.properties == AttackProperties(monotone=False)


def test_a_library_attack_with_batch_size_0_runs_all_inputs_at_once(write_toml, registry):
    """``batch_size = 0`` gives the library every input in one call (and the host's
    re-check a batch of its own): the rows equal one chunk holding all the inputs."""
    from robench import api

    text = """
        [experiment]
        name = "all_at_once"
        seeds = [0]
        device = "cpu"

        [data]
        dataset = "test.blobs"
        test_subset = 12

        [training]
        epochs = 1

        [[models]]
        name = "mlp"
        hidden = [8]

        [defenses]
        none = []

        [[attacks]]
        name = "pgd"
        attack = "foolbox.LinfPGD"
        steps = 3
        batch_size = BATCH
        epsilons = [0.0, 0.2]

        [metrics]
        use = ["test.row_count"]

        [report]
        formats = []
    """
    rows = {}
    for batch in (0, 12):
        path = write_toml(textwrap.dedent(text).replace("BATCH", str(batch)), f"b{batch}.toml")
        run = api.run(path, out=path.parent / f"run{batch}", progress=False, report=False,
                      registry=registry)
        rows[batch] = run.results.drop(columns="forward_passes backward_passes".split())
    assert len(rows[0]) == 2 * 12
    assert (rows[0].loc[rows[0]["epsilon"] > 0, "distance"] > 0).all()  # it attacked
    pd.testing.assert_frame_equal(rows[0], rows[12])
