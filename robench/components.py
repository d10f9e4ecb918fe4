"""The component contract: base classes every plugin subclasses.

A component is a class with a unique ``name``, a frozen ``Options`` dataclass and one
main method. Plugins hand component *classes* to the ``register`` callback of a hook
(see :mod:`robench.hookspecs`); robench instantiates them with parsed options.

This module must stay importable without torch: listing plugins and validating
experiment files never import torch or an attack library. Heavy imports happen inside
the methods, when a component is first used.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import typing
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .options import NoOptions, describe_options

if TYPE_CHECKING:  # pragma: no cover - type hints only
    import pandas as pd
    import torch
    from torch import nn


class ThreatModel(str, enum.Enum):
    """How an attack's budget ``epsilon`` is measured.

    ``L0`` budgets are the *fraction* of input values (all channels) that may change, in
    [0, 1]; ``UNBOUNDED`` attacks (fooling images, semantic attacks) have no budget and
    their epsilon is a step size or strength.
    """

    LINF = "linf"
    L2 = "l2"
    L1 = "l1"
    L0 = "l0"
    UNBOUNDED = "unbounded"


class Component:
    """Base of every plugin component.

    Subclasses set ``name`` (unique within their kind), may set ``Options`` (a frozen
    dataclass; its field metadata ``help`` is shown by ``robench plugins --verbose``) and
    ``version`` (defaults to the version of the distribution that registered it), and
    document themselves in their docstring.
    """

    kind: ClassVar[str] = "component"
    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    version: ClassVar[str | None] = None

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    def __repr__(self) -> str:
        opts = ", ".join(f"{f.name}={getattr(self.options, f.name)!r}"
                         for f in dataclasses.fields(self.options))
        return f"{type(self).__name__}({opts})"

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Name, kind, summary, docstring and options schema, JSON-friendly."""
        doc = inspect.cleandoc(cls.__doc__ or "")
        return {"kind": cls.kind, "name": cls.name, "summary": doc.splitlines()[0] if doc else "",
                "doc": doc, "options": describe_options(cls.Options)}


# --------------------------------------------------------------------------- datasets


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a dataset declares about itself; everything downstream relies on it.

    ``input_shape`` excludes the batch dimension (``(C, H, W)`` for images, ``(D,)`` for
    feature vectors). ``bounds`` are the valid input values (``(0.0, 1.0)`` for images;
    ``(-inf, inf)`` for unbounded synthetic data). ``eps_scale`` is the natural unit of a
    budget for reports (255 for 8-bit images, 1 otherwise).
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)
    eps_scale: int = 1
    class_names: tuple[str, ...] = ()
    source: str = ""

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


@dataclasses.dataclass
class LoadedData:
    """Tensors of one dataset: ``x`` float in ``info.bounds``, ``y`` int64 class indices."""

    info: DataInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


class Dataset(Component):
    """A data set factory. ``load`` returns the full train and test splits.

    The host takes train/test subsets (first N) itself, so ``load`` only reads data.
    ``root`` is the data directory from the experiment file (may be ``None``).
    """

    kind = "dataset"

    def load(self, root: str | None) -> LoadedData:
        raise NotImplementedError


# ----------------------------------------------------------------------------- models


class Model(Component):
    """A model factory: ``build(info)`` returns an ``nn.Module`` mapping inputs within
    ``info.bounds`` to logits of shape ``(N, info.num_classes)``. Any normalisation lives
    inside the module."""

    kind = "model"

    def build(self, info: DataInfo) -> nn.Module:
        raise NotImplementedError

    def init_from_data(self, module: nn.Module, x_train: torch.Tensor,
                       y_train: torch.Tensor) -> None:
        """Optional data-dependent initialisation (e.g. the "expert" class-mean init),
        called once after ``build`` with the training split; the default does nothing."""
        return None

    def sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """The model's own training loss *per sample*, shape ``(N,)`` (e.g. the hinge loss
        of a linear SVM); ``None`` (the default) means cross-entropy. A defense's
        ``sample_loss`` takes precedence."""
        return None


# --------------------------------------------------------------------------- defenses


@dataclasses.dataclass
class TrainingContext:
    """What a defense sees during training.

    ``attack(name, options)`` returns a ready attack component, e.g.
    ``ctx.attack("torchattacks.PGD", {"steps": 7})`` (its ``perturb`` is the cheap path
    for adversarial training). ``generator`` is the cell's seeded torch generator.
    ``data`` is the cell's data (the experiment's subsets), for defenses that derive
    something from the training split (``feature_selection``'s mask).
    """

    info: DataInfo
    device: Any
    epochs: int
    generator: Any
    attack: Any  # Callable[[dict], Attack]
    data: LoadedData | None = None


class Defense(Component):
    """Changes how a model is built or trained. Defenses compose in a stack; each hook
    below has a neutral default so a defense overrides only what it changes.

    Called by the host's training loop, in this order: ``wrap_model`` once after the
    model is built; per batch ``transform_batch`` (e.g. adversarial examples), then the
    loss, then ``after_step``; ``after_epoch`` at the end of each epoch. The loss is

        sum_i weight_i * sample_loss_i  +  sum over defenses of loss_term

    where ``sample_loss`` is the first defense's ``sample_loss`` that is not None (e.g.
    label smoothing), else the model's, else cross-entropy; and ``weight`` is uniform
    (the batch mean) unless ``transform_batch`` returned weights (adversarial training
    mixing clean and adversarial halves). So per-sample losses and batch mixing compose
    in any stack order.
    """

    kind = "defense"

    def wrap_model(self, model: nn.Module, ctx: TrainingContext) -> nn.Module:
        return model

    def transform_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        epoch: int, ctx: TrainingContext) -> tuple:
        """Return ``(x, y)``, or ``(x, y, weights)`` with one weight per sample summing to
        1 to weight the batch (at most one defense of a stack may weight it)."""
        return x, y

    def sample_loss(self, model: nn.Module, logits: torch.Tensor, y: torch.Tensor,
                    ctx: TrainingContext) -> torch.Tensor | None:
        """Replace the per-sample data loss, shape ``(N,)`` (e.g. label smoothing);
        ``None`` keeps the model's loss or cross-entropy."""
        return None

    def loss_term(self, model: nn.Module, ctx: TrainingContext) -> torch.Tensor | None:
        return None

    def after_step(self, model: nn.Module, ctx: TrainingContext) -> None:
        return None

    def after_epoch(self, model: nn.Module, epoch: int, ctx: TrainingContext) -> None:
        return None


# ---------------------------------------------------------------------------- attacks


@dataclasses.dataclass(frozen=True)
class AttackProperties:
    """What an attack promises; the conformance kit (:mod:`robench.testing`) checks it.

    ``starts_from_input``: the adversarial input is a perturbation of the clean one.
    ``deterministic``: the same seed gives the same result.
    ``monotone``: a larger budget never makes the attack weaker (minimal-distance attacks
    thresholded at every eps are monotone by construction).
    ``bounded``: every perturbation is within its budget (norm <= eps).
    """

    starts_from_input: bool = True
    deterministic: bool = True
    monotone: bool = False
    bounded: bool = True


@dataclasses.dataclass
class AttackResult:
    """What ``Attack.run`` returns, for every epsilon of the sweep.

    Give ``adversarials`` (one tensor per epsilon, shaped like ``x``) whenever possible:
    the host then clips to the data bounds, measures the distance and recomputes the
    prediction itself. Attacks that cannot keep every input (e.g. an incremental pass
    over thousands of budgets) give ``predictions`` and ``distances`` (``(E, N)``
    tensors) instead, and may keep a few ``examples`` for reports.

    ``inputs``/``labels`` override the clean inputs when the attack generates its own
    starting points (fooling images start from noise: ``source="noise"`` and labels -1);
    ``targets`` then gives the class each generated input was pushed towards. Scalars and
    strings in ``details`` are recorded in run.json; a ``details["examples"]`` tensor of
    shape ``(E, k, *input_shape)`` is stored for reports when there are no
    ``adversarials``. ``library`` ``None`` means the attack class's ``library`` (the base
    classes fill it in; the host falls back to the registering distribution's name).
    """

    epsilons: Sequence[float]
    adversarials: Sequence[torch.Tensor] | None = None
    predictions: torch.Tensor | None = None
    distances: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    source: str = "data"
    library: str | None = None
    library_version: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


_SWEEP_BASES: tuple[type, ...] = ()
"""The base classes whose final ``run`` does the sweep (set once they are defined)."""


class Attack(Component):
    """An attack probes a model over a whole sweep of budgets.

    Write an attack by subclassing one of the two base classes that own the sweep:
    :class:`FixedBudgetAttack` (write ``perturb`` for one budget) or
    :class:`MinimalAttack` (write one ``search`` for the smallest adversarial). Their
    final ``run`` answers every eps, projects, thresholds, chunks, seeds and handles
    targets and transfer sources the same way for every attack.

    ``run`` receives the model in eval mode, inputs within ``bounds``, their labels, and
    every epsilon; it returns an :class:`AttackResult`. ``targets`` (class indices, one
    per input) makes the attack targeted; ``source_model`` makes it a transfer attack
    (crafted on ``source_model``, evaluated on ``model``). ``generator`` is a seeded
    ``torch.Generator`` for any randomness; the host seeds it from the attack and the
    cell's seed (never the defense), so every model of one seed faces the same
    randomness. ``perturb`` is the cheap single-budget path used by adversarial
    training: tensors in, tensors out, no bookkeeping.

    *Escape hatch*: an attack that answers every budget in one pass (random pixel swap,
    a single-step sweep) subclasses ``Attack`` directly, sets ``sweeps_itself = True``
    and overrides ``run``. A direct subclass overriding ``run`` without it is an attack
    written for the previous contract: it still works, with a ``DeprecationWarning``.

    ``threat_model`` may be set per instance (e.g. from a ``norm`` option); the host
    reads it from the instance. ``library`` names the code that does the attacking
    (``None``: the name of the distribution that registered the class);
    ``library_version`` its version.
    """

    kind = "attack"
    threat_model: ThreatModel = ThreatModel.LINF
    library: ClassVar[str | None] = None
    library_version: ClassVar[str] = ""
    properties: ClassVar[AttackProperties] = AttackProperties()
    supports_targets: ClassVar[bool] = False
    sweeps_itself: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None or getattr(run, "__final__", False):
            return
        base = next((b for b in _SWEEP_BASES if issubclass(cls, b)), None)
        if base is not None:
            raise TypeError(f"{cls.__qualname__} overrides the final run() of "
                            f"{base.__name__}: write perturb() (fixed budget) or search() "
                            f"(minimal) instead")
        if not cls.sweeps_itself:
            warnings.warn(
                f"attack {cls.__qualname__} overrides Attack.run without "
                f"sweeps_itself = True; subclass robench.FixedBudgetAttack or "
                f"robench.MinimalAttack instead (overriding run is deprecated and stops "
                f"working in the next release)", DeprecationWarning, stacklevel=2)

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            epsilons: Sequence[float], *, bounds: tuple[float, float],
            targets: torch.Tensor | None = None, source_model: nn.Module | None = None,
            generator: torch.Generator | None = None) -> AttackResult:
        """Adversarials (or predictions and distances) for every eps of the sweep."""
        raise NotImplementedError(f"attack {self.name!r} defines no run()")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                bounds: tuple[float, float], targets: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Adversarials at one budget: the sweep at ``[eps]``."""
        result = self.run(model, x, y, [eps], bounds=bounds, targets=targets,
                          generator=generator)
        if result.adversarials is None:
            raise NotImplementedError(f"attack {self.name!r} has no perturb path")
        return result.adversarials[0]

    def prepare(self) -> None:
        """Import what the attack needs to run (its library); the host calls it before a
        unit's timer starts, so an import is not counted as attack time. Default:
        nothing."""
        return None

    def check_inputs(self, x: torch.Tensor, targets: torch.Tensor | None,
                     bounds: tuple[float, float]) -> None:
        """Raise ``ValueError`` for a call the attack cannot honour (the base classes
        call it first): targets given to an untargeted attack, inputs outside the
        bounds. Subclasses extend it (``super().check_inputs(...)``)."""
        if targets is not None and not self.supports_targets:
            raise ValueError(f"{self.name} has no targeted mode; run it untargeted")
        lo, hi = bounds
        if len(x) and (x.min() < lo or x.max() > hi):
            raise ValueError(f"{self.name}: inputs lie outside the data bounds {tuple(bounds)}")

    def chunk_size(self) -> int:
        """Inputs per call of ``perturb``/``search`` (0: all at once); the ``batch_size``
        option when the attack has one."""
        return int(getattr(self.options, "batch_size", 0) or 0)

    def result(self, epsilons: Sequence[float], **fields: Any) -> AttackResult:
        """An :class:`AttackResult` with this attack's ``library`` and version filled in."""
        fields.setdefault("library", type(self).library)
        fields.setdefault("library_version", type(self).library_version)
        return AttackResult(epsilons=list(epsilons), **fields)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        out = super().describe()
        out.update(library=cls.library, threat_model=cls.threat_model.value,
                   targeted=cls.supports_targets,
                   properties=dataclasses.asdict(cls.properties))
        return out

    def _chunked(self, fn: Any, x: torch.Tensor, y: torch.Tensor,
                 targets: torch.Tensor | None, seed: int | None) -> torch.Tensor:
        """``fn(x, y, targets, generator)`` over chunks of :meth:`chunk_size`; chunk ``k``
        gets a generator and global RNGs seeded by ``chunk_seed(seed, k)`` (restored
        afterwards), so the same seed gives the same randomness whatever the model. Each
        call runs in :func:`robench.counting.attacking` of its chunk, so a pass counter
        counts a forward of the whole chunk as one pass per input, unmatched."""
        import torch

        from . import attack_runtime as rt
        from .counting import attacking

        out = []
        for k, part in enumerate(rt.chunks(len(x), self.chunk_size())):
            chunk_seed = rt.chunk_seed(seed, k)
            chunk = x[part]
            with rt.seeded(chunk_seed, x.device), attacking(chunk):
                adv = fn(chunk, y[part], None if targets is None else targets[part],
                         rt.generator_for(chunk_seed))
            if adv.shape != chunk.shape:
                raise ValueError(f"{self.name} returned adversarials shaped {tuple(adv.shape)} "
                                 f"for inputs shaped {tuple(chunk.shape)}")
            out.append(adv.detach().to(x.device, x.dtype))
        return torch.cat(out) if out else x.clone()


def _sweep_start(attack: Attack, model: nn.Module, x: torch.Tensor,
                 targets: torch.Tensor | None, bounds: tuple[float, float],
                 source_model: nn.Module | None,
                 generator: torch.Generator | None) -> tuple[Any, int | None, dict[str, Any]]:
    """What every sweep base class does first: check the call, pick the crafting model
    (the transfer source when there is one), draw the run's seed from ``generator``, and
    start the details with ``crafted_on``."""
    from . import attack_runtime as rt

    attack.check_inputs(x, targets, bounds)
    transfer = source_model is not None
    return (source_model if transfer else model, rt.draw_seed(generator),
            {"crafted_on": "source_model" if transfer else "model"})


class FixedBudgetAttack(Attack):
    """An attack for one budget at a time; the base class runs the sweep.

    Write ``perturb(model, x, y, eps, *, bounds, targets=None, generator=None)``: the
    adversarial inputs for budget ``eps`` (on ``model``, which is the transfer source when
    there is one; ``targets`` set only if ``supports_targets``). The final :meth:`run`:

    * returns the clean inputs at eps = 0;
    * calls ``perturb`` once per eps on chunks of :meth:`chunk_size` inputs, chunk ``k``
      with a generator (and global torch/numpy/``random`` RNGs, restored afterwards)
      seeded from the run's generator and ``k``: the same at every eps, so an eps's result
      does not depend on the grid, and the same for every model of one seed;
    * projects each output onto the eps-ball (clip for linf, rescale for l2/l1) and the
      data bounds (L0 outputs are only clipped to the bounds: the host rejects any over
      budget);
    * crafts on ``source_model`` when given (transfer) and records
      ``details["crafted_on"]``;
    * returns the adversarials as a lazy sequence
      (:class:`robench.attack_runtime.LazySweep`): each eps is computed when it is
      first read, and the host reads one eps at a time, so memory stays flat over the
      grid and the host counts each eps's model passes apart.

    Adversarial training calls ``perturb`` directly (one batch, the training
    generator), so it should return inputs within the budget and the bounds itself; the
    projection of ``run`` is the host's guarantee for the evaluated sweep.

    *Incremental sweep* (opt-in: the class attribute ``incremental = True`` or an
    ``incremental`` option): the budgets run in increasing order and each attacks only
    the inputs not yet broken on the crafting model (already misclassified, or at a
    smaller eps); broken inputs keep their earlier adversarial. Much cheaper on long
    grids, but an eps's result then depends on the grid, so it is recorded as
    ``details["incremental"] = True``.
    """

    incremental: ClassVar[bool] = False
    properties = AttackProperties(starts_from_input=True, deterministic=True,
                                  monotone=False, bounded=True)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                bounds: tuple[float, float], targets: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Adversarials of ``x`` at budget ``eps`` (the method an author writes)."""
        raise NotImplementedError(f"attack {self.name!r} defines no perturb()")

    def is_incremental(self) -> bool:
        """Whether the sweep is incremental: the ``incremental`` option if the attack
        has one, else the class attribute."""
        return bool(getattr(self.options, "incremental", type(self).incremental))

    @typing.final
    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            epsilons: Sequence[float], *, bounds: tuple[float, float],
            targets: torch.Tensor | None = None, source_model: nn.Module | None = None,
            generator: torch.Generator | None = None) -> AttackResult:
        """Adversarials for every eps (see the class docstring)."""
        from . import attack_runtime as rt

        crafting, seed, details = _sweep_start(self, model, x, targets, bounds,
                                               source_model, generator)
        incremental = self.is_incremental()
        tm = ThreatModel(self.threat_model).value

        def at(eps: float, xs, ys, ts):
            def call(xc, yc, tc, gen):
                return self.perturb(crafting, xc, yc, eps, bounds=bounds, targets=tc,
                                    generator=gen)
            return rt.project(xs, self._chunked(call, xs, ys, ts, seed), eps, tm, bounds)

        adversarials: Sequence[Any]
        if incremental:
            adversarials = [None] * len(epsilons)
            with rt.eval_mode(crafting):
                current = x.clone()
                broken = rt.succeeded(crafting, x, y, targets).to(x.device)
                for i in sorted(range(len(epsilons)), key=lambda j: float(epsilons[j])):
                    eps, todo = float(epsilons[i]), ~broken
                    if eps > 0 and bool(todo.any()):
                        current = current.clone()
                        current[todo] = at(eps, x[todo], y[todo],
                                           None if targets is None else targets[todo])
                        broken = broken | rt.succeeded(crafting, current, y, targets).to(
                            x.device)
                    adversarials[i] = current.clone() if eps > 0 else x.clone()
        else:
            def compute(i: int):
                eps = float(epsilons[i])
                if eps <= 0:
                    return x.clone()
                with rt.eval_mode(crafting):
                    return at(eps, x, y, targets)

            adversarials = rt.LazySweep(compute, len(epsilons), attacks_on_read=True)
        details.update(minimal=False, incremental=incremental)
        return self.result(epsilons, adversarials=adversarials, details=details)


class MinimalAttack(Attack):
    """An attack that searches for the smallest adversarial once; the base class
    thresholds it at every budget.

    Write ``search(model, x, y, *, bounds, targets=None, generator=None)``: one
    adversarial candidate per input, as close to ``x`` as the attack can find (on
    ``model``, the transfer source when there is one). The final :meth:`run` calls it
    once (in chunks of :meth:`chunk_size`, seeded as :class:`FixedBudgetAttack` does),
    clips the candidates to the data bounds, measures their distance under the threat
    model with the host's own rule, and at each eps keeps a candidate only if it fools
    the *crafting* model and its distance is <= eps; otherwise the clean input stands.
    Success is therefore monotone in eps. ``details["minimal_distances"]`` holds each
    input's distance (inf where the search failed). The adversarials are a
    :class:`robench.attack_runtime.ThresholdedSweep`, which the host judges once for
    every eps.

    *Assumption*: the search does not depend on the budget (a budget would only be a
    stopping rule), so the thresholded result equals a run at that budget.
    """

    properties = AttackProperties(starts_from_input=True, deterministic=True,
                                  monotone=True, bounded=True)

    def search(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
               bounds: tuple[float, float], targets: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """The closest adversarial candidate of each input (the method an author writes)."""
        raise NotImplementedError(f"attack {self.name!r} defines no search()")

    @typing.final
    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            epsilons: Sequence[float], *, bounds: tuple[float, float],
            targets: torch.Tensor | None = None, source_model: nn.Module | None = None,
            generator: torch.Generator | None = None) -> AttackResult:
        """The search, thresholded at every eps (see the class docstring)."""
        import torch

        from . import attack_runtime as rt

        crafting, seed, details = _sweep_start(self, model, x, targets, bounds,
                                               source_model, generator)

        def call(xc, yc, tc, gen):
            return self.search(crafting, xc, yc, bounds=bounds, targets=tc, generator=gen)

        with rt.eval_mode(crafting):
            adv = self._chunked(call, x, y, targets, seed).clamp(bounds[0], bounds[1])
            fooled = rt.succeeded(crafting, adv, y, targets).to(x.device)
        dist = rt.distance(x, adv, ThreatModel(self.threat_model).value)
        dist = torch.where(fooled, dist, torch.full_like(dist, float("inf")))
        details.update(minimal=True, minimal_distances=dist.cpu())
        return self.result(epsilons, details=details,
                           adversarials=rt.ThresholdedSweep(x, adv, dist, epsilons))


_SWEEP_BASES = (FixedBudgetAttack, MinimalAttack)


# ---------------------------------------------------------------------------- metrics


@dataclasses.dataclass
class CellData:
    """A trained cell as a metric sees it: its identity, model, data and training log.

    ``attack(name, options)`` returns a ready attack component, exactly as
    :attr:`TrainingContext.attack` does (e.g. ``cell.attack("foolbox.LinfPGD",
    {"steps": 10})``), so a metric that needs adversarial inputs uses the attack the user
    chose rather than one of its own.
    """

    cell: dict[str, Any]
    model: nn.Module
    data: LoadedData
    history: pd.DataFrame
    device: Any
    attack: Any  # Callable[[str, dict], Attack]


class Metric(Component):
    """Computes tidy metric rows, in three stages that each have a neutral default.

    1. ``from_cell(cell)``: once per trained cell while its model is in memory (for
       metrics that need weights, data or fresh attacks, e.g. singular values); the
       host adds the cell's identity columns.
    2. ``from_results(results)``: over the tidy per-sample result frame of the whole
       run (every cell, attack and epsilon), after every unit finished.
    3. ``from_metrics(metrics)``: after every metric's ``from_results``, with the rows
       computed so far: the per-cell rows, every ``from_results`` row, and the
       ``from_metrics`` rows of the metrics listed *before* this one in ``[metrics]
       use`` (so a summary over seeds lists the metrics it summarises first, or
       anywhere: ``from_results`` rows are all there already).

    Each returns rows with at least the columns ``metric`` and ``value`` plus the
    grouping columns it used (``dataset, model, defense, seed, attack, ...``), or
    ``None`` when it does not apply.

    ``higher_is_better`` says which way the metric's values are better for the
    defender: ``True`` (accuracies), ``False`` (attack success, gaps) or ``None`` (no
    direction: spectra, distributions). A metric whose rows differ gives them a
    ``higher_is_better`` column, which takes precedence for those rows; the host fills
    the column from this attribute for every other row, and reporters read only the
    column.
    """

    kind = "metric"
    higher_is_better: ClassVar[bool | None] = None

    def from_results(self, results: pd.DataFrame) -> pd.DataFrame | None:
        """Rows computed from the tidy per-sample result frame (default: none)."""
        return None

    def from_cell(self, cell: CellData) -> pd.DataFrame | None:
        """Rows computed from one trained cell while its model is loaded (default: none)."""
        return None

    def from_metrics(self, metrics: pd.DataFrame) -> pd.DataFrame | None:
        """Rows computed from the metric rows of the earlier stages (default: none)."""
        return None

    @classmethod
    def describe(cls) -> dict[str, Any]:
        out = super().describe()
        out.update(higher_is_better=cls.higher_is_better)
        return out


# -------------------------------------------------------------------------- reporters


@dataclasses.dataclass
class ReportSection:
    """One section of a report: a title, Markdown text, tables and figures.

    ``figures`` are matplotlib figures (the renderer saves and embeds them; a figure's
    ``fig.get_label()`` is its caption); ``tables`` are DataFrames rendered as HTML and
    Markdown tables (``frame.attrs["title"]`` is the caption; ``**bold**`` inside a cell
    is kept). ``order`` sorts sections (lower first). Text is Markdown without raw HTML
    or images, so a report never fetches anything.
    """

    title: str
    text: str = ""
    tables: list[Any] = dataclasses.field(default_factory=list)
    figures: list[Any] = dataclasses.field(default_factory=list)
    order: int = 50


class Reporter(Component):
    """Adds sections to a report, reading only the stored run (never a model).

    ``sections(run)`` gets a :class:`robench.results.RunStore` and returns a list of
    :class:`ReportSection` (empty when it has nothing to show for this run).
    ``compare(runs)`` gets ``{label: RunStore}`` of several runs, in the user's order, for
    ``robench compare``, and returns sections with the differences (deltas against the
    first run); the default contributes nothing.

    ``by_default``: whether the reporter's sections are in a report whose experiment
    does not list ``[report] reporters``; an opt-in reporter (False) appears only when
    listed there.

    Every value a section shows that does not come from the reporter's own wording
    (labels, file names, errors read from the run) goes through
    :func:`robench.report.escape_markdown`; links are kept only to http(s) and relative
    URLs.
    """

    kind = "reporter"
    by_default: ClassVar[bool] = True

    def sections(self, run: Any) -> list[ReportSection]:
        raise NotImplementedError

    def compare(self, runs: dict[str, Any]) -> list[ReportSection]:
        return []


# -------------------------------------------------------------------------- executors


class Executor(Component):
    """Runs independent units of work (one per cell) and yields their outcomes.

    ``map(fn, items)`` calls ``fn(item)`` for each item and yields ``(item, outcome)``
    pairs as they finish, in any order. ``fn`` is a picklable top-level function
    (:func:`robench.work.run_cell`) and items and outcomes are picklable
    (:class:`robench.work.CellWork`, :class:`robench.work.CellOutcome`), so an executor
    may run them in other processes or machines. An executor that runs several items at
    once sets ``workers`` (the host then gives each one ``cores // workers`` torch
    threads unless ``[experiment] threads`` says otherwise), and ``threads`` when it
    sizes its workers' threads itself (then used instead of ``cores // workers``). An
    item may declare ``timeout`` (seconds, or None); an executor that loses an item (its
    worker died, or was stopped past the timeout) yields ``item.failed(error)`` as its
    outcome. The local executor runs them in-process one at a time; ``processes`` and
    ``dask`` run them in worker processes.
    """

    kind = "executor"

    def map(self, fn: Any, items: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError


KINDS: dict[str, type[Component]] = {
    "dataset": Dataset, "model": Model, "defense": Defense, "attack": Attack,
    "metric": Metric, "reporter": Reporter, "executor": Executor,
}
"""Every kind of component, keyed by kind name (the hook is ``robench_register_<kind>s``)."""
