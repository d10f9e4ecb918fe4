"""The attack conformance kit: check what an attack's declared properties imply.

Any attack plugin, built-in or third-party, can be run through :func:`check_attack`::

    from robench.testing import check_attack

    report = check_attack(attack, model, x, y, [0.0, 0.01, 0.03], bounds=(0.0, 1.0))
    assert report.ok, report.summary()

The kit runs the attack like the host does (model in eval mode, the whole eps sweep in
one call, a seeded generator), measures every output with the host's own rules
(:func:`robench.evaluation.distances` and :func:`robench.evaluation.within_budget`, so
"within budget" means what the host accepts: norm <= eps plus a float tolerance, and
for L0 the fraction of changed values <= eps plus half a value), and checks:

* ``result``: one answer per eps with the right shapes;
* ``bounds``: every adversarial input inside the data bounds;
* ``budget`` (``properties.bounded``): every perturbation within its eps;
* ``eps0`` (``bounded`` and ``starts_from_input``): eps = 0 changes nothing;
* ``seed`` (``properties.deterministic``): the same seed gives the same result, and the
  global torch RNG is left as it was (randomness comes from the generator);
* ``not_better`` (untargeted, ``starts_from_input``, ``monotone``): adversarial accuracy
  <= clean (reported, not enforced, for other attacks: a random swap or an FGSM step can
  make a misclassified input correct);
* ``monotone`` (``properties.monotone``): adversarial accuracy non-increasing in eps
  (targeted: success rate non-decreasing);
* ``grid`` (:class:`robench.FixedBudgetAttack`, deterministic, not incremental): the
  largest eps run alone gives what it gives inside the sweep (the base class seeds every
  eps alike, so an eps's result must not depend on the grid).

Checks that a property does not imply are reported as skipped, never as passed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .components import Attack, AttackResult, FixedBudgetAttack, ThreatModel

__all__ = ["Check", "ConformanceReport", "check_attack"]


@dataclasses.dataclass(frozen=True)
class Check:
    """One conformance check: its name, outcome (``None`` = skipped) and a detail line."""

    name: str
    passed: bool | None
    detail: str = ""


@dataclasses.dataclass
class ConformanceReport:
    """Every check of one attack run, plus the measured robust accuracy per eps."""

    attack: str
    checks: list[Check]
    epsilons: list[float]
    accuracy: list[float]

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not count)."""
        return all(c.passed is not False for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if c.passed is False]

    def summary(self) -> str:
        """One line per check, for assertion messages."""
        mark = {True: "ok  ", False: "FAIL", None: "skip"}
        lines = [f"conformance of {self.attack}:"]
        lines += [f"  {mark[c.passed]} {c.name}: {c.detail}" for c in self.checks]
        lines.append("  accuracy per eps: "
                     + ", ".join(f"{e:g}: {a:.3f}" for e, a in zip(self.epsilons, self.accuracy)))
        return "\n".join(lines)


def _finite(v: float) -> bool:
    import math

    return math.isfinite(float(v))


def _outputs(result: AttackResult) -> list:
    """Every tensor a result answers with, on the CPU: the adversarials per eps, or the
    predictions and then the distances per eps."""
    if result.adversarials is not None:
        return [a.detach().cpu() for a in result.adversarials]
    rows = [] if result.predictions is None else list(result.predictions.cpu())
    return rows + ([] if result.distances is None else list(result.distances.cpu()))


def _device(model):
    try:
        return next(model.parameters()).device
    except StopIteration:
        return "cpu"


def check_attack(attack: Attack, model, x, y, epsilons: Sequence[float], *,
                 bounds: tuple[float, float] = (0.0, 1.0), targets=None, source_model=None,
                 seed: int = 0, threat_model: ThreatModel | str | None = None,
                 accuracy_slack: float = 0.0) -> ConformanceReport:
    """Run ``attack`` on ``(x, y)`` over ``epsilons`` and check its declared properties.

    ``threat_model`` defaults to the attack's own (``attack.threat_model``, which an
    instance may set from its options). ``targets`` runs it targeted, ``source_model``
    as a transfer attack. ``accuracy_slack`` loosens the accuracy comparisons (default:
    exact). Include 0 in ``epsilons`` to exercise the ``eps0`` check. Returns a
    :class:`ConformanceReport`; nothing is raised for a failed check.
    """
    import torch

    from .evaluation import distances, predict, within_budget

    tm = ThreatModel(threat_model if threat_model is not None else attack.threat_model)
    props = attack.properties
    epsilons = [float(e) for e in epsilons]
    x, y = x.detach().cpu().float(), y.detach().cpu().long()
    model.eval()
    if source_model is not None:
        source_model.eval()
    checks: list[Check] = []

    def run() -> AttackResult:
        gen = torch.Generator().manual_seed(seed)
        return attack.run(model, x, y, epsilons, bounds=bounds, targets=targets,
                          source_model=source_model, generator=gen)

    rng_before = torch.random.get_rng_state()
    result = run()
    rng_untouched = torch.equal(rng_before, torch.random.get_rng_state())

    # --- result shape
    start = x if result.inputs is None else result.inputs.detach().cpu().float()
    labels = y if result.labels is None else result.labels.detach().cpu().long()
    n = len(start)
    problems = []
    if list(map(float, result.epsilons)) != epsilons:
        problems.append(f"epsilons {list(result.epsilons)} != requested {epsilons}")
    if result.adversarials is not None:
        if len(result.adversarials) != len(epsilons):
            problems.append(f"{len(result.adversarials)} adversarial tensors for "
                            f"{len(epsilons)} eps")
        problems += [f"eps {e:g}: shape {tuple(a.shape)} != {tuple(start.shape)}"
                     for e, a in zip(epsilons, result.adversarials) if a.shape != start.shape]
    elif result.predictions is None or result.distances is None:
        problems.append("neither adversarials nor predictions and distances")
    elif tuple(result.predictions.shape) != (len(epsilons), n) or \
            tuple(result.distances.shape) != (len(epsilons), n):
        problems.append(f"predictions/distances shaped {tuple(result.predictions.shape)}/"
                        f"{tuple(result.distances.shape)}, expected {(len(epsilons), n)}")
    library = result.library or type(attack).library or "(set by the registry from the " \
        "registering distribution)"
    checks.append(Check("result", not problems, "; ".join(problems) or
                        f"{len(epsilons)} eps x {n} inputs, library {library} "
                        f"{result.library_version}".rstrip()))
    if problems:
        return ConformanceReport(attack.name, checks, epsilons, [])

    # --- measure like the host
    lo, hi = bounds
    finite = _finite(lo) and _finite(hi)
    num_features = int(torch.tensor(start.shape[1:]).prod())
    device = _device(model)
    pred_clean, _, _ = predict(model, start, 512, device)
    measured = []
    for i, eps in enumerate(epsilons):
        if result.adversarials is not None:
            adv = result.adversarials[i].detach().cpu().float()
            clipped = adv.clamp(lo, hi) if finite else adv
            dist = distances(clipped - start, tm)
            pred, _, _ = predict(model, clipped, 512, device)
        else:
            assert result.distances is not None and result.predictions is not None
            adv, dist = None, result.distances[i].cpu().float()
            pred = result.predictions[i].cpu().long()
        ok = within_budget(dist, eps, tm, num_features)
        measured.append((adv, dist, torch.where(ok, pred, pred_clean), ok))

    # --- bounds
    if result.adversarials is not None and finite:
        outside = [(e, max(lo - float(a.min()), float(a.max()) - hi))
                   for e, (a, _, _, _) in zip(epsilons, measured)
                   if a is not None and len(a) and (a.min() < lo - 1e-6 or a.max() > hi + 1e-6)]
        checks.append(Check("bounds", not outside,
                            f"outside {bounds} at eps {outside}" if outside
                            else f"within {bounds}"))
    else:
        checks.append(Check("bounds", None, "no adversarial inputs or unbounded data"))

    # --- budget
    if props.bounded and tm is not ThreatModel.UNBOUNDED:
        over = [(e, float(d.max())) for e, (_, d, _, ok) in zip(epsilons, measured)
                if len(d) and not bool(ok.all())]
        checks.append(Check("budget", not over,
                            f"over budget (eps, max {tm.value}): {over}" if over
                            else f"every {tm.value} perturbation <= eps + tolerance"))
    else:
        checks.append(Check("budget", None, "attack declares no budget"))

    # --- eps = 0
    if props.bounded and props.starts_from_input and 0.0 in epsilons:
        i = epsilons.index(0.0)
        adv, dist, pred, _ = measured[i]
        changed = int((dist > 0).sum())
        checks.append(Check("eps0", changed == 0, f"{changed} inputs changed at eps = 0"))
    else:
        checks.append(Check("eps0", None, "no eps = 0 in the sweep, or the attack is unbounded"
                                          " or does not start from the input"))

    # --- seed
    if props.deterministic:
        first, again = _outputs(result), _outputs(run())
        same = len(first) == len(again) and all(torch.equal(a, b) for a, b in zip(first, again))
        checks.append(Check("seed", same and rng_untouched,
                            ("same seed, same result" if same else "same seed, different result")
                            + ("" if rng_untouched else "; the global torch RNG was used")))
    else:
        checks.append(Check("seed", None, "attack declares no determinism"))

    # --- grid (fixed-budget sweeps that are not incremental)
    if (isinstance(attack, FixedBudgetAttack) and not attack.is_incremental()
            and props.deterministic and result.adversarials is not None):
        gen = torch.Generator().manual_seed(seed)
        alone = _outputs(attack.run(model, x, y, epsilons[-1:], bounds=bounds, targets=targets,
                                    source_model=source_model, generator=gen))
        same = len(alone) == 1 and torch.equal(alone[0], _outputs(result)[len(epsilons) - 1])
        checks.append(Check("grid", same, f"eps {epsilons[-1]:g} alone "
                            + ("equals" if same else "differs from") + " its value in the sweep"))
    else:
        checks.append(Check("grid", None, "not a deterministic, non-incremental fixed-budget "
                                          "attack"))

    # --- accuracy
    accuracy = [float((pred == labels).float().mean()) for _, _, pred, _ in measured]
    clean = float((pred_clean == labels).float().mean())
    if targets is None and props.starts_from_input:
        worse = [(e, a) for e, a in zip(epsilons, accuracy) if a > clean + accuracy_slack]
        detail = (f"accuracy above clean {clean:.3f} at {worse}" if worse
                  else f"adversarial accuracy <= clean {clean:.3f}")
        # only a monotone attack promises it: a random swap or an FGSM step can turn a
        # misclassified input into a correct one
        checks.append(Check("not_better", not worse if props.monotone else None,
                            detail if props.monotone else f"not enforced: {detail}"))
    else:
        checks.append(Check("not_better", None, "targeted, or inputs not from the data"))

    if props.monotone:
        order = sorted(range(len(epsilons)), key=epsilons.__getitem__)
        if targets is None:
            curve = [accuracy[i] for i in order]
            bad = [(epsilons[order[k + 1]], curve[k + 1]) for k in range(len(curve) - 1)
                   if curve[k + 1] > curve[k] + accuracy_slack]
            what = "accuracy rises"
        else:
            t = targets.detach().cpu().long()
            curve = [float((measured[i][2] == t).float().mean()) for i in order]
            bad = [(epsilons[order[k + 1]], curve[k + 1]) for k in range(len(curve) - 1)
                   if curve[k + 1] < curve[k] - accuracy_slack]
            what = "success falls"
        checks.append(Check("monotone", not bad, f"{what} at {bad}" if bad
                            else "monotone in eps"))
    else:
        checks.append(Check("monotone", None, "attack declares no monotonicity"))
    return ConformanceReport(attack.name, checks, epsilons, accuracy)
