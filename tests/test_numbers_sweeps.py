"""The sweep and threshold logic of the attack base classes, against hand computations.

The attacks here return fixed candidates (no optimisation), so what the final ``run`` of
:class:`robench.FixedBudgetAttack` and :class:`robench.MinimalAttack` does with them
(project, clip, threshold, keep the clean input, chunk, seed) is all that is tested.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from robench import FixedBudgetAttack, MinimalAttack, ThreatModel
from robench.attack_runtime import chunk_seed, chunks, distance, project, succeeded


def larger_feature() -> nn.Module:
    """Logits equal to the two input features: the prediction is the larger one."""
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
    return net


def smaller_feature() -> nn.Module:
    """Logits equal to minus the features: the prediction is the smaller one."""
    net = larger_feature()
    with torch.no_grad():
        net.weight.mul_(-1)
    return net


X = torch.tensor([[0.75, 0.25], [0.25, 0.75], [0.5, 0.25]])
Y = torch.tensor([0, 1, 0])


@dataclasses.dataclass(frozen=True)
class Batch:
    batch_size: int = 0


class Fixed(MinimalAttack):
    """A minimal attack returning the candidates it was given."""

    name = "numbers.fixed_candidates"
    threat_model = ThreatModel.LINF
    supports_targets = True
    Options = Batch

    def __init__(self, candidates, options=None, threat_model=ThreatModel.LINF):
        super().__init__(options)
        self.candidates, self.threat_model = candidates, threat_model
        self.calls: list[int] = []

    def search(self, model, x, y, *, bounds, targets=None, generator=None):
        self.calls.append(len(x))
        start = sum(self.calls[:-1])
        return self.candidates[start:start + len(x)].clone()


class Push(FixedBudgetAttack):
    """A fixed-budget attack adding ``direction`` (times 10: always beyond eps)."""

    name = "numbers.push"
    supports_targets = True
    Options = Batch

    def __init__(self, direction, options=None, threat_model=ThreatModel.LINF):
        super().__init__(options)
        self.direction, self.threat_model = direction, threat_model
        self.calls: list[tuple[float, int, int | None]] = []

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        seed = None if generator is None else generator.initial_seed()
        self.calls.append((eps, len(x), seed))
        return x + 10 * self.direction[:len(x)]


# --------------------------------------------------------------- the named one-line bugs

def test_minimal_attack_keeps_only_candidates_that_fool():
    """Bug: minimal attacks keeping in-budget outputs that do not fool.

    Input 0's candidate [0.375, 0.5] is 0.375 away and fools (class 1); input 1's
    candidate [0.5, 0.75] is 0.25 away and does not (still class 1); input 2's candidate
    [0.5, 0.25] equals the input (distance 0, but it does not fool)."""
    candidates = torch.tensor([[0.375, 0.5], [0.5, 0.75], [0.5, 0.25]])
    result = Fixed(candidates).run(larger_feature(), X, Y, [0.25, 0.5], bounds=(0.0, 1.0))
    assert result.details["minimal_distances"].tolist() == [0.375, math.inf, math.inf]
    torch.testing.assert_close(result.adversarials[0], X)
    torch.testing.assert_close(result.adversarials[1],
                               torch.stack([candidates[0], X[1], X[2]]))
    assert result.details["minimal"] is True


def test_minimal_attack_threshold_includes_the_budget_itself():
    """A candidate exactly eps = 0.375 away is kept at eps = 0.375, not at 0.25."""
    candidates = torch.tensor([[0.375, 0.5], [0.25, 0.75], [0.5, 0.25]])
    result = Fixed(candidates).run(larger_feature(), X, Y, [0.25, 0.375, 0.0],
                                   bounds=(0.0, 1.0))
    kept = [bool((adv[0] == candidates[0]).all()) for adv in result.adversarials]
    assert kept == [False, True, False]


def test_minimal_candidates_are_clipped_before_measuring():
    """[0.75, 0.25] -> [0.75, 1.5] clips to [0.75, 1.0]: distance 0.75, fools."""
    candidates = torch.tensor([[0.75, 1.5], [0.25, 0.75], [0.5, 0.25]])
    result = Fixed(candidates).run(larger_feature(), X, Y, [0.75], bounds=(0.0, 1.0))
    assert result.details["minimal_distances"][0].item() == 0.75
    assert result.adversarials[0][0].tolist() == [0.75, 1.0]


def test_minimal_l2_distances_are_the_hosts():
    """[0.75, 0.25] -> [0.45, 0.65]: l2 distance 0.5 (a 3-4-5 triangle)."""
    candidates = torch.tensor([[0.45, 0.65], [0.25, 0.75], [0.5, 0.25]])
    result = Fixed(candidates, threat_model=ThreatModel.L2).run(
        larger_feature(), X, Y, [0.49, 0.51], bounds=(0.0, 1.0))
    assert result.details["minimal_distances"][0].item() == pytest.approx(0.5, abs=1e-6)
    assert torch.equal(result.adversarials[0][0], X[0])
    assert torch.equal(result.adversarials[1][0], candidates[0])


def test_minimal_attack_fools_the_crafting_model_when_transferring():
    """With a source model (prediction = smaller feature), a candidate counts when it
    fools the source, whatever the attacked model says."""
    candidates = torch.tensor([[0.375, 0.5], [0.25, 0.75], [0.5, 0.75]])
    result = Fixed(candidates).run(larger_feature(), X, Y, [1.0], bounds=(0.0, 1.0),
                                   source_model=smaller_feature())
    # source predictions: [0.375, 0.5] -> 0 (label 0: no), [0.25, 0.75] -> 0 (label 1:
    # fools), [0.5, 0.75] -> 0 (label 0: no)
    assert result.details["minimal_distances"].tolist() == [math.inf, 0.0, math.inf]
    assert result.details["crafted_on"] == "source_model"


def test_minimal_targeted_attack_keeps_candidates_reaching_the_target():
    candidates = torch.tensor([[0.375, 0.5], [0.5, 0.25], [0.5, 0.75]])
    result = Fixed(candidates).run(larger_feature(), X, Y, [1.0], bounds=(0.0, 1.0),
                                   targets=torch.tensor([0, 0, 1]))
    assert result.details["minimal_distances"].tolist() == [math.inf, 0.5, 0.5]
    assert result.details["crafted_on"] == "model"


def test_minimal_search_runs_once_in_chunks():
    candidates = torch.tensor([[0.375, 0.5], [0.25, 0.75], [0.5, 0.75]])
    attack = Fixed(candidates, options=Batch(batch_size=2))
    result = attack.run(larger_feature(), X, Y, [0.5, 1.0], bounds=(0.0, 1.0))
    assert attack.calls == [2, 1]
    assert result.details["minimal_distances"].tolist() == [0.375, math.inf, 0.5]


def test_fixed_budget_outputs_are_projected_onto_the_linf_ball_and_bounds():
    """Bug: fixed-budget outputs not projected onto the eps-ball. x + 10 * (1, -1) at
    eps = 0.125 becomes x + (0.125, -0.125), clipped to [0, 1]."""
    direction = torch.tensor([[1.0, -1.0]] * 3)
    attack = Push(direction)
    result = attack.run(larger_feature(), X, Y, [0.0, 0.125, 0.5], bounds=(0.0, 1.0))
    assert torch.equal(result.adversarials[0], X)
    assert result.adversarials[1].tolist() == [[0.875, 0.125], [0.375, 0.625],
                                               [0.625, 0.125]]
    assert result.adversarials[2].tolist() == [[1.0, 0.0], [0.75, 0.25], [1.0, 0.0]]
    assert [eps for eps, _, _ in attack.calls] == [0.125, 0.5]  # never called at eps = 0
    assert result.details == {"minimal": False, "incremental": False, "crafted_on": "model"}


@pytest.mark.parametrize("threat_model, expected", [
    # delta (0.3, 0.4): l2 norm 0.5 rescaled to 0.25 -> (0.15, 0.2)
    (ThreatModel.L2, [0.15, 0.2]),
    # l1 norm 0.7 rescaled to 0.25 -> (0.3, 0.4) * 0.25 / 0.7
    (ThreatModel.L1, [0.3 * 0.25 / 0.7, 0.4 * 0.25 / 0.7]),
])
def test_norm_projection_rescales_the_perturbation(threat_model, expected):
    x = torch.tensor([[0.25, 0.25]])
    adv = project(x, x + torch.tensor([[0.3, 0.4]]), 0.25, threat_model.value, (0.0, 1.0))
    assert (adv - x)[0].tolist() == pytest.approx(expected, rel=1e-5)
    inside = project(x, x + torch.tensor([[0.03, 0.04]]), 0.25, threat_model.value,
                     (0.0, 1.0))
    assert (inside - x)[0].tolist() == pytest.approx([0.03, 0.04], rel=1e-5)


def test_norm_projection_rescales_each_image_by_its_own_norm():
    """Two (1, 2, 2) images with perturbations of l2 norms 0.5 and 0.1 at eps = 0.25:
    the first is halved, the second kept."""
    x = torch.full((2, 1, 2, 2), 0.5)
    delta = torch.tensor([[0.3, 0.4, 0.0, 0.0], [0.0, 0.0, 0.06, 0.08]]).view(2, 1, 2, 2)
    adv = project(x, x + delta, 0.25, "l2", (0.0, 1.0))
    torch.testing.assert_close(adv - x, delta * torch.tensor([0.5, 1.0]).view(2, 1, 1, 1))


def test_l0_and_unbounded_outputs_are_only_clipped_to_the_bounds():
    x = torch.tensor([[0.25, 0.5]])
    for threat_model in ("l0", "unbounded"):
        adv = project(x, torch.tensor([[0.75, 1.5]]), 0.1, threat_model, (0.0, 1.0))
        assert adv.tolist() == [[0.75, 1.0]]


def test_projecting_a_zero_perturbation_is_the_input():
    x = torch.tensor([[0.25, 0.5]])
    assert project(x, x.clone(), 0.5, "l2", (0.0, 1.0)).tolist() == x.tolist()


def test_fixed_budget_chunks_share_seeds_across_budgets():
    direction = torch.tensor([[1.0, -1.0]] * 3)
    attack = Push(direction, options=Batch(batch_size=2))
    generator = torch.Generator().manual_seed(7)
    list(attack.run(larger_feature(), X, Y, [0.25, 0.5], bounds=(0.0, 1.0),
                    generator=generator).adversarials)  # each eps is computed when read
    seed = int(torch.randint(0, 2**31 - 1, (1,),
                             generator=torch.Generator().manual_seed(7)).item())
    assert attack.calls == [(0.25, 2, seed), (0.25, 1, seed + 1),
                            (0.5, 2, seed), (0.5, 1, seed + 1)]


def test_incremental_sweep_runs_the_budgets_in_increasing_order():
    """Budgets given as (0.5, 0.125) run as 0.125 then 0.5; nothing breaks at 0.125, so
    0.5 attacks every input again, from the clean inputs."""
    direction = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [1.0, -1.0]])

    class Incremental(Push):
        incremental = True

    attack = Incremental(direction)
    result = attack.run(larger_feature(), X, Y, [0.5, 0.125], bounds=(0.0, 1.0))
    assert [(eps, n) for eps, n, _ in attack.calls] == [(0.125, 3), (0.5, 3)]
    assert result.adversarials[1].tolist() == [[0.625, 0.375], [0.375, 0.625],
                                               [0.625, 0.125]]
    assert result.adversarials[0].tolist() == [[0.25, 0.75], [0.75, 0.25], [1.0, 0.0]]
    assert result.details["incremental"] is True


def test_incremental_sweep_keeps_earlier_adversarials_of_broken_inputs():
    """Input 1 is misclassified from the start (label 0, class 1): never attacked. Input
    0 breaks at eps = 0.375 and keeps that adversarial at eps = 0.5."""
    x = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    y = torch.tensor([0, 0])
    direction = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]])

    class Incremental(Push):
        incremental = True

    attack = Incremental(direction)
    result = attack.run(larger_feature(), x, y, [0.0, 0.125, 0.375, 0.5],
                        bounds=(0.0, 1.0))
    assert [(eps, n) for eps, n, _ in attack.calls] == [(0.125, 1), (0.375, 1)]
    assert result.adversarials[0].tolist() == x.tolist()
    assert result.adversarials[1].tolist() == [[0.625, 0.375], [0.25, 0.75]]
    assert result.adversarials[2].tolist() == [[0.375, 0.625], [0.25, 0.75]]
    assert result.adversarials[3].tolist() == [[0.375, 0.625], [0.25, 0.75]]


def test_fixed_budget_transfer_crafts_on_the_source_model():
    direction = torch.tensor([[1.0, -1.0]] * 3)

    class Recorder(Push):
        def perturb(self, model, x, y, eps, **kwargs):
            self.models.append(model)
            return super().perturb(model, x, y, eps, **kwargs)

    attack = Recorder(direction)
    attack.models = []
    source = smaller_feature()
    result = attack.run(larger_feature(), X, Y, [0.25], bounds=(0.0, 1.0),
                        source_model=source)
    list(result.adversarials)  # each eps is computed when read
    assert attack.models == [source]
    assert result.details["crafted_on"] == "source_model"


def test_an_incremental_option_overrides_the_class_attribute():
    @dataclasses.dataclass(frozen=True)
    class Choice:
        incremental: bool = False

    class Optional(Push):
        incremental = True
        Options = Choice

    x, y = X[:1], Y[:1]
    off = Optional(torch.zeros(1, 2)).run(larger_feature(), x, y, [0.1], bounds=(0.0, 1.0))
    on = Optional(torch.zeros(1, 2), options=Choice(incremental=True)).run(
        larger_feature(), x, y, [0.1], bounds=(0.0, 1.0))
    assert (off.details["incremental"], on.details["incremental"]) == (False, True)
    assert Push(torch.zeros(1, 2)).is_incremental() is False


def test_the_base_methods_name_the_attack_that_lacks_them():
    class NoPerturb(FixedBudgetAttack):
        name = "numbers.no_perturb"

    class NoSearch(MinimalAttack):
        name = "numbers.no_search"

    with pytest.raises(NotImplementedError, match="^attack 'numbers.no_perturb' defines "
                                                  "no perturb\\(\\)$"):
        list(NoPerturb().run(larger_feature(), X, Y, [0.1], bounds=(0.0, 1.0)).adversarials)
    with pytest.raises(NotImplementedError, match="^attack 'numbers.no_search' defines "
                                                  "no search\\(\\)$"):
        list(NoSearch().run(larger_feature(), X, Y, [0.1], bounds=(0.0, 1.0)).adversarials)


def test_attacks_refuse_calls_they_cannot_honour():
    attack = Push(torch.zeros(3, 2))
    attack.supports_targets = False
    with pytest.raises(ValueError, match="has no targeted mode"):
        attack.run(larger_feature(), X, Y, [0.1], bounds=(0.0, 1.0), targets=Y)
    with pytest.raises(ValueError, match=r"inputs lie outside the data bounds \(0.0, 0.5\)"):
        attack.run(larger_feature(), X, Y, [0.1], bounds=(0.0, 0.5))
    with pytest.raises(ValueError, match="outside the data bounds"):
        attack.run(larger_feature(), X, Y, [0.1], bounds=(0.3, 1.0))
    attack.run(larger_feature(), X, Y, [0.1], bounds=(0.25, 0.75))  # the edges are in
    attack.run(larger_feature(), X[:0], Y[:0], [0.1], bounds=(0.3, 0.4))


def test_a_search_returning_the_wrong_shape_is_an_error():
    attack = Fixed(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"returned adversarials shaped \(3, 3\) for "
                                         r"inputs shaped \(3, 2\)"):
        attack.run(larger_feature(), X, Y, [0.1], bounds=(0.0, 1.0))


def test_results_carry_the_attack_classs_library():
    class Labelled(Push):
        library = "my-library"
        library_version = "1.2"

    result = Labelled(torch.zeros(3, 2)).run(larger_feature(), X, Y, [0.1],
                                             bounds=(0.0, 1.0))
    assert (result.library, result.library_version) == ("my-library", "1.2")
    assert list(result.epsilons) == [0.1]


class Noisy(FixedBudgetAttack):
    """Records what each call receives and adds global-RNG noise (torch.rand)."""

    name = "numbers.noisy"
    supports_targets = True
    Options = Batch

    def __init__(self, options=None, dtype=None):
        super().__init__(options)
        self.seen: list[tuple[list, list | None]] = []
        self.dtype = dtype

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        self.seen.append((y.tolist(), None if targets is None else targets.tolist()))
        out = x + eps * (2 * torch.rand(x.shape) - 1)
        return out if self.dtype is None else out.to(self.dtype)


def test_chunks_get_their_labels_and_targets():
    attack = Noisy(options=Batch(batch_size=2))
    list(attack.run(larger_feature(), X, Y, [0.1], bounds=(0.0, 1.0),
                    targets=torch.tensor([1, 0, 1])).adversarials)
    assert attack.seen == [([0, 1], [1, 0]), ([0], [1])]


def test_an_attack_without_a_batch_size_gets_every_input_at_once():
    class Whole(Noisy):
        Options = dataclasses.make_dataclass("NoBatch", [], frozen=True)

    attack = Whole()
    assert attack.chunk_size() == 0
    list(attack.run(larger_feature(), X, Y, [0.1], bounds=(0.0, 1.0)).adversarials)
    assert attack.seen == [([0, 1, 0], None)]


def test_global_randomness_is_seeded_per_chunk_and_restored():
    """The same run generator gives the same noise twice, and the caller's global RNG
    stream is left where it was."""
    model = larger_feature()  # building a layer draws from the global RNG

    def sweep():
        generator = torch.Generator().manual_seed(3)
        result = Noisy(options=Batch(batch_size=2)).run(
            model, X, Y, [0.25], bounds=(0.0, 1.0), generator=generator)
        return list(result.adversarials)[0]

    torch.manual_seed(0)
    first = sweep()
    torch.manual_seed(1)
    second = sweep()
    assert torch.equal(first, second) and not torch.equal(first, X)
    torch.manual_seed(5)
    untouched = torch.rand(1)
    torch.manual_seed(5)
    sweep()
    assert torch.equal(torch.rand(1), untouched)


def test_adversarials_take_the_inputs_dtype():
    result = Noisy(dtype=torch.float64).run(larger_feature(), X, Y, [0.1],
                                            bounds=(0.0, 1.0))
    assert list(result.adversarials)[0].dtype == torch.float32


def test_no_inputs_give_empty_sweeps():
    for attack in (Noisy(), Fixed(torch.zeros(0, 2))):
        result = attack.run(larger_feature(), X[:0], Y[:0], [0.0, 0.1], bounds=(0.0, 1.0))
        assert [tuple(a.shape) for a in result.adversarials] == [(0, 2), (0, 2)]


def test_runtime_helpers_by_hand():
    assert chunks(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert chunks(3, 0) == [slice(0, 3)]
    assert chunks(1, 0) == [slice(0, 1)]
    assert chunks(3, 1) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert chunks(0, 0) == []
    assert chunk_seed(None, 3) is None
    assert chunk_seed(5, 2) == 7
    assert chunk_seed(2**31 - 2, 1) == 0
    d = distance(torch.zeros(1, 2), torch.tensor([[0.3, -0.4]]), "l2")
    assert d.tolist() == pytest.approx([0.5])
    model = larger_feature()
    adv = torch.tensor([[0.25, 0.75], [0.75, 0.25]])
    assert succeeded(model, adv, torch.tensor([0, 0]), None).tolist() == [True, False]
    assert succeeded(model, adv, torch.tensor([0, 0]), torch.tensor([1, 1])).tolist() == [
        True, False]


def test_overriding_the_final_run_is_refused():
    with pytest.raises(TypeError, match="overrides the final run\\(\\) of MinimalAttack"):
        class Bad(MinimalAttack):
            def run(self, *args, **kwargs):
                return None
