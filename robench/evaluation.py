"""The host's re-check of every attack output, turned into tidy result rows.

An attack's own success flag is never trusted: each adversarial input is clipped to the
dataset's bounds, its distance from the starting input is measured under the attack's
threat model, and the model's prediction is recomputed. An adversarial input outside
its budget (beyond a small numerical tolerance), or with a value that is not finite,
does not count: its row keeps the measured distance, ``within_budget`` is False and the
clean prediction stands. Attacks that return only predictions and distances have them
checked (classes in range, distances finite and non-negative) and fail otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from .attack_runtime import LazySweep, ThresholdedSweep, release_freed_memory
from .components import AttackResult, ThreatModel
from .counting import PassCounter, total_passes
from .results import RESULT_COLUMNS

LINF_TOL = 1e-5   # float32 rounding of x + eps
NORM_RTOL = 1e-4  # l1 / l2: relative tolerance
TRIM_BYTES = 16 * 2**20
"""Bytes of CPU adversarials read and freed after which the host hands freed memory back
to the system (:func:`robench.attack_runtime.release_freed_memory`): a trim walks the
whole heap, milliseconds each, so small sweeps are not trimmed at every eps."""


def distances(delta: torch.Tensor, threat_model: ThreatModel) -> torch.Tensor:
    """Per-sample size of ``delta`` under the threat model (L0: fraction changed)."""
    flat = delta.flatten(1)
    if threat_model is ThreatModel.LINF or threat_model is ThreatModel.UNBOUNDED:
        return flat.abs().amax(1) if flat.shape[1] else flat.new_zeros(len(flat))
    if threat_model is ThreatModel.L2:
        return flat.norm(p=2, dim=1)
    if threat_model is ThreatModel.L1:
        return flat.abs().sum(1)
    return (flat != 0).float().mean(1)


def within_budget(dist: torch.Tensor, eps: float, threat_model: ThreatModel,
                  num_features: int) -> torch.Tensor:
    """Whether each distance respects budget ``eps`` (with numerical tolerance)."""
    if threat_model is ThreatModel.UNBOUNDED:
        return torch.ones_like(dist, dtype=torch.bool)
    if threat_model is ThreatModel.LINF:
        return dist <= eps + LINF_TOL
    if threat_model is ThreatModel.L0:
        return dist <= eps + 0.5 / num_features
    return dist <= eps * (1 + NORM_RTOL) + 1e-6


@torch.no_grad()
def device_logits(model, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """The model's float logits on ``x``, in batches on ``device``, left there: the one
    forward pass behind every prediction robench records (the model's mode is the
    caller's: the host evaluates in eval mode)."""
    if not len(x):
        return torch.empty(0, 0, device=device)
    return torch.cat([model(x[start:start + batch_size].to(device)).float()
                      for start in range(0, len(x), batch_size)])


def logits(model, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """:func:`device_logits` on the CPU."""
    return device_logits(model, x, batch_size, device).cpu()


def classes(out: torch.Tensor) -> torch.Tensor:
    """The predicted class of each row of logits ``out``: the largest logit, the first
    of them on a tie (``argmax``). Every prediction of the host and of the attacks'
    success checks goes through this rule."""
    if not len(out):
        return torch.empty(0, dtype=torch.long, device=out.device)
    return out.argmax(1)


def predictions(model, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Predicted classes of ``model`` on ``x`` (:func:`classes` of :func:`device_logits`),
    on ``device``."""
    return classes(device_logits(model, x, batch_size, device))


def scores(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prediction, softmax confidence of the prediction and top-1 minus top-2 softmax
    margin of each row of logits ``out`` (on ``out``'s device; with a single class the
    margin is the confidence)."""
    probs = out.softmax(1)
    top = probs.topk(min(2, probs.shape[1]), dim=1).values
    margin = top[:, 0] - top[:, 1] if probs.shape[1] > 1 else top[:, 0]
    return classes(out), top[:, 0], margin


def predict(model, x: torch.Tensor, batch_size: int, device) -> tuple[torch.Tensor, ...]:
    """Predictions, softmax confidence of the prediction and top-1 minus top-2 margin
    (:func:`scores` of :func:`device_logits`), on the CPU."""
    if not len(x):
        return (torch.empty(0, dtype=torch.long), torch.empty(0), torch.empty(0))
    return tuple(t.cpu() for t in scores(device_logits(model, x, batch_size, device)))


def check_predictions(pred: torch.Tensor, dist: torch.Tensor, num_classes: int,
                      eps: float) -> None:
    """Raise ValueError unless an attack's own predictions are class indices in
    ``[0, num_classes)`` and its distances are finite and non-negative."""
    bad = (pred < 0) | (pred >= num_classes)
    if bad.any():
        raise ValueError(f"the attack predicted class {int(pred[bad][0])} at eps={eps}; "
                         f"classes are 0..{num_classes - 1}")
    bad = ~torch.isfinite(dist) | (dist < 0)
    if bad.any():
        raise ValueError(f"the attack reported distance {float(dist[bad][0])} at eps={eps}; "
                         f"distances are finite and non-negative")


def _readout(result: AttackResult, ok: np.ndarray) -> dict[str, np.ndarray]:
    """An attack's own confidence read-out (``details["readout_confidence"]`` and
    ``["readout_margin"]``, ``(E, N)``) as eps-major columns, NaN where the host
    rejected the input (``ok`` is False) or the attack gave none."""
    out = {}
    for name in ("readout_confidence", "readout_margin"):
        values = result.details.get(name)
        if isinstance(values, torch.Tensor):
            column = values.detach().cpu().float().reshape(-1).numpy()
            out[name] = np.where(ok, column, np.nan).astype("float32")
        else:
            out[name] = np.full(len(ok), np.nan, dtype="float32")
    return out


def _frame(columns: dict[str, np.ndarray], epsilons, samples: np.ndarray, source: str,
           labels: np.ndarray, targets: np.ndarray | None, pred_clean: np.ndarray,
           constants: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of every eps (eps-major), built from eps-major numpy columns and
    ``constants`` (one value for every row), in the order of
    :data:`robench.results.RESULT_COLUMNS`."""
    num_eps = len(epsilons)
    pred_adv = columns["pred_adv"].astype("int64")
    ok = columns["within_budget"].astype(bool)
    label = np.tile(labels, num_eps)
    has_label = label >= 0
    clean = np.tile(pred_clean, num_eps).astype("int64")
    if targets is not None:
        target = np.tile(targets, num_eps)
        success = pred_adv == target
    else:  # untargeted: the label changes (or, for inputs without one, the prediction)
        target = None
        success = pred_adv != np.where(has_label, label, clean)
    n = len(samples)
    values = {
        "epsilon": np.repeat(np.asarray(epsilons, dtype="float64"), n),
        "sample": np.tile(np.asarray(samples, dtype="int64"), num_eps),
        "source": _constant(source, len(label)),
        "target": (pd.array(target, dtype="Int64") if target is not None
                   else pd.arrays.IntegerArray(np.zeros(len(label), "int64"),
                                               np.ones(len(label), bool))),
        "label": pd.arrays.IntegerArray(label.astype("int64"), ~has_label),
        "pred_clean": clean,
        "pred_adv": pred_adv,
        "distance": columns["distance"].astype("float64"),
        "confidence": columns["confidence"].astype("float32"),
        "margin": columns["margin"].astype("float32"),
        "readout_confidence": columns["readout_confidence"],
        "readout_margin": columns["readout_margin"],
        "forward_passes": columns["forward_passes"].astype("float64"),
        "backward_passes": columns["backward_passes"].astype("float64"),
        "within_budget": ok,
        "correct_clean": (clean == label) & has_label,
        "correct_adv": (pred_adv == label) & has_label,
        "success": success & ok,
        **{name: _constant(value, len(label)) for name, value in constants.items()},
    }
    order = [name for name in RESULT_COLUMNS if name in values]
    return pd.DataFrame({name: values[name] for name in
                         order + [name for name in values if name not in order]})


def _constant(value: Any, length: int) -> Any:
    """A column of ``length`` copies of ``value``; a string as pandas' default string
    dtype, repeated by pyarrow rather than one Python object per row."""
    if isinstance(value, str):
        repeated = pa.array([value]).take(pa.array(np.zeros(length, dtype="int32")))
        return pd.array(repeated, dtype=pd.StringDtype(na_value=np.nan))
    return np.full(length, value)


class _Judged:
    """The host's verdict on the adversarials of every eps, gathered on the device:
    per eps the measured distance, whether the adversarial counts (within budget and
    finite), the prediction that stands (the clean one where it does not count) and
    its confidence and margin (NaN where it does not count)."""

    NAMES = ("pred_adv", "distance", "within_budget", "confidence", "margin")

    def __init__(self, pred_clean: torch.Tensor):
        self.pred_clean = pred_clean
        self.columns: dict[str, list[torch.Tensor]] = {name: [] for name in self.NAMES}

    def add(self, dist: torch.Tensor, ok: torch.Tensor, pred: torch.Tensor,
            conf: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
        """Record one eps; return the prediction that stands."""
        nan = torch.tensor(float("nan"), device=conf.device)
        stands = torch.where(ok, pred, self.pred_clean)
        for name, value in zip(self.NAMES, (stands, dist, ok, torch.where(ok, conf, nan),
                                            torch.where(ok, margin, nan))):
            self.columns[name].append(value)
        return stands

    def reported(self, pred: torch.Tensor, dist: torch.Tensor, ok: torch.Tensor) -> None:
        """Record one eps of an attack that reports predictions and distances itself
        (checked by :func:`check_predictions`): they stand as given, no confidence."""
        nan = torch.full((len(pred),), float("nan"))
        for name, value in zip(self.NAMES, (pred, dist, ok, nan, nan)):
            self.columns[name].append(value)

    def numpy(self) -> dict[str, np.ndarray]:
        """Every column, eps-major, on the CPU (one transfer per column)."""
        return {name: torch.cat(values).cpu().numpy() if values else np.empty(0)
                for name, values in self.columns.items()}


def result_rows(model, result: AttackResult, x: torch.Tensor, y: torch.Tensor,
                samples: np.ndarray, targets: torch.Tensor | None, *,
                threat_model: ThreatModel, bounds: tuple[float, float], num_classes: int,
                batch_size: int, device, examples: int = 8,
                counters: Sequence[PassCounter] = (),
                constants: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame,
                                                                     dict[str, np.ndarray]]:
    """Re-check ``result`` and return (rows, example arrays for reports).

    ``x``/``y``/``samples``/``targets`` are the attacked inputs, labels, data set indices
    and targets (None when untargeted); the first ``examples`` inputs are kept as
    arrays for reports. ``result.epsilons`` must be the requested budgets. The rows
    carry every column of :data:`robench.results.RESULT_COLUMNS` except the cell and
    attack identity, which the runner gives as ``constants`` (columns with one value
    for every row), in that order.

    The inputs move to ``device`` once and the adversarials are judged there; only the
    row columns and the kept examples come back to the CPU. Adversarials are read one
    eps at a time (a lazy sweep computes each on read). A minimal attack's thresholded
    sweep (:class:`robench.attack_runtime.ThresholdedSweep`) is judged once: its
    candidates and the clean inputs are measured and predicted once and each eps selects
    between them, which gives the rows the per-eps re-check would.

    ``counters`` are the :class:`robench.counting.PassCounter` s the attack ran on: a
    sweep that attacks on read (:class:`robench.attack_runtime.LazySweep`) has its
    passes counted per eps, any other result the passes of its whole run at every eps;
    inputs the attack generated itself, or no counters, give NaN.
    """
    source = result.source
    if result.inputs is not None:
        x = result.inputs
        y = result.labels if result.labels is not None else torch.full((len(x),), -1)
        samples = np.arange(len(x))
        if result.targets is not None:
            targets = result.targets.cpu()
    x, y = x.cpu(), y.cpu()
    n, num_eps = len(x), len(result.epsilons)
    num_features = int(np.prod(x.shape[1:]))
    check = _Recheck(x.to(device), threat_model, bounds, num_features, model, batch_size,
                     device)
    judged = _Judged(check.clean_scores[0])
    k = min(examples, n)
    passes: dict[str, list[np.ndarray]] = {"forward_passes": [], "backward_passes": []}
    kept: dict[str, list] = {"adversarial": [], "pred_adv": []}
    counted = bool(counters) and result.inputs is None
    per_eps = counted and getattr(result.adversarials, "attacks_on_read", False)
    if not per_eps:  # the whole run's passes at every eps
        nan = np.full(n, np.nan)
        forward, backward = total_passes(list(counters)) if counted else (nan, nan)
        passes = {"forward_passes": [forward] * num_eps, "backward_passes": [backward] * num_eps}

    def judge(adv: torch.Tensor, dist: torch.Tensor, ok: torch.Tensor,
              pred: torch.Tensor, conf: torch.Tensor, margin: torch.Tensor) -> None:
        stands = judged.add(dist, ok, pred, conf, margin)
        kept["adversarial"].append(adv[:k].to("cpu", copy=True).numpy())
        kept["pred_adv"].append(stands[:k].cpu().numpy())

    sweep = result.adversarials
    if sweep is not None:
        thresholded = check.thresholded(sweep)
        if thresholded is not None:
            for i, eps in enumerate(result.epsilons):
                judge(*thresholded.at(i, float(eps), k))
        else:  # one eps at a time: a lazy sequence is not held
            freed = 0
            for i, eps in enumerate(result.epsilons):
                if per_eps:
                    for counter in counters:
                        counter.reset()
                adv = (sweep.take(i) if isinstance(sweep, LazySweep) else sweep[i]).detach()
                if per_eps:
                    for name, value in zip(passes, total_passes(list(counters))):
                        passes[name].append(value)
                if adv.shape != x.shape:
                    raise ValueError(f"attack returned adversarials of shape "
                                     f"{tuple(adv.shape)} for inputs of shape "
                                     f"{tuple(x.shape)} at eps={eps}")
                judge(*check.one(adv, float(eps)))
                freed += adv.nbytes if adv.device.type == "cpu" else 0
                del adv
                if freed >= TRIM_BYTES:
                    release_freed_memory()
                    freed = 0
        columns = judged.numpy()
    else:
        if result.predictions is None or result.distances is None:
            raise ValueError("an AttackResult needs adversarials, or predictions "
                             "and distances")
        for i, eps in enumerate(result.epsilons):
            pred = result.predictions[i].cpu().long()
            dist = result.distances[i].cpu().float()
            check_predictions(pred, dist, num_classes, eps)
            judged.reported(pred, dist, within_budget(dist, eps, threat_model, num_features))
        columns = judged.numpy()
    columns.update(_readout(result, columns["within_budget"]))
    columns.update({name: np.concatenate(values) if values else np.empty(0)
                    for name, values in passes.items()})
    pred_clean = check.clean_scores[0].cpu().numpy()
    rows = _frame(columns, result.epsilons, samples, source, y.numpy(),
                  None if targets is None else targets.cpu().numpy(), pred_clean,
                  constants or {})
    arrays: dict[str, np.ndarray] = {}
    stored = result.details.get("examples")
    if kept["adversarial"] and k > 0:
        arrays = {"adversarial": np.stack(kept["adversarial"]),
                  "pred_adv": np.stack(kept["pred_adv"])}
    elif isinstance(stored, torch.Tensor) and stored.dim() == x.dim() + 1 and k > 0:
        k = min(k, stored.shape[1])  # an attack that keeps only a few inputs itself
        arrays = {"adversarial": stored[:, :k].cpu().float().numpy(),
                  "pred_adv": cast(torch.Tensor, result.predictions)[:, :k].cpu().numpy()}
    if arrays:
        arrays.update(epsilons=np.asarray(result.epsilons, dtype="float64"),
                      clean=x[:k].numpy(), labels=y[:k].numpy())
        if targets is not None:
            arrays["targets"] = targets[:k].cpu().numpy()
    return rows, arrays


class _Recheck:
    """The host's measurements of adversarials against the clean inputs ``x`` (on the
    device): clipped to the bounds, distance under the threat model, finite values,
    within budget, and the model's prediction (on the clean input where the
    adversarial is not finite). The clean inputs are predicted once, here."""

    def __init__(self, x: torch.Tensor, threat_model: ThreatModel,
                 bounds: tuple[float, float], num_features: int, model, batch_size: int,
                 device):
        self.x, self.threat_model, self.num_features = x, threat_model, num_features
        self.bounds = bounds  # an infinite bound clips nothing on its side
        self.model, self.batch_size, self.device = model, batch_size, device
        self.clean_scores = scores(device_logits(model, x, batch_size, device))

    def measure(self, adv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(clipped adversarial, distance, finite, prediction, confidence, margin), the
        prediction taken on the clean input where the adversarial is not finite."""
        adv = adv.to(self.device).float()
        adv = adv.clamp(*self.bounds)
        dist = distances(adv - self.x, self.threat_model)
        finite = torch.isfinite(adv.flatten(1)).all(1)
        shape = (-1, *[1] * (adv.dim() - 1))
        pred, conf, margin = scores(device_logits(
            self.model, torch.where(finite.view(shape), adv, self.x), self.batch_size,
            self.device))
        return adv, dist, finite, pred, conf, margin

    def one(self, adv: torch.Tensor, eps: float) -> tuple[torch.Tensor, ...]:
        """(clipped adversarial, distance, counts, prediction, confidence, margin) of one
        eps's adversarials."""
        adv, dist, finite, pred, conf, margin = self.measure(adv)
        ok = within_budget(dist, eps, self.threat_model, self.num_features) & finite
        return adv, dist, ok, pred, conf, margin

    def thresholded(self, sweep) -> _Selection | None:
        """The candidates of a minimal attack's sweep judged once, when the sweep
        selects between them and exactly these inputs and the inputs are finite float32
        values within the bounds (the per-eps re-check then gives the same rows); else None."""
        if not isinstance(sweep, ThresholdedSweep):
            return None
        x = self.x
        inside = x.clamp(*self.bounds)
        if (sweep.candidates.shape != x.shape or
                not torch.equal(sweep.inputs.to(self.device), x) or
                x.dtype != torch.float32 or not torch.equal(inside, x) or
                not bool(torch.isfinite(x).all())):
            return None
        return _Selection(self, sweep)


class _Selection:
    """A thresholded sweep judged once: the candidates and the clean inputs measured
    and predicted once, each eps choosing between them as the sweep does."""

    def __init__(self, check: _Recheck, sweep: ThresholdedSweep):
        self.check, self.sweep = check, sweep
        self.candidate = check.measure(sweep.candidates.detach())
        x = check.x.float()  # finite and within the bounds: clipping keeps it
        self.clean = (x, distances(x - check.x, check.threat_model),
                      torch.ones(len(x), dtype=torch.bool, device=x.device),
                      *check.clean_scores)

    def at(self, i: int, eps: float, k: int) -> tuple[torch.Tensor, ...]:
        """What :meth:`_Recheck.one` gives for eps ``i``'s adversarials, only the first
        ``k`` adversarials built."""
        chosen = self.sweep.chosen(i).to(self.check.device)
        adv_c, dist_c, finite_c, *scores_c = self.candidate
        adv_x, dist_x, finite_x, *scores_x = self.clean
        shape = (-1, *[1] * (adv_c.dim() - 1))
        adv = torch.where(chosen[:k].view(shape), adv_c[:k], adv_x[:k])
        dist = torch.where(chosen, dist_c, dist_x)
        finite = torch.where(chosen, finite_c, finite_x)
        ok = within_budget(dist, eps, self.check.threat_model, self.check.num_features) & finite
        pred, conf, margin = (torch.where(chosen, c, x) for c, x in zip(scores_c, scores_x))
        return adv, dist, ok, pred, conf, margin
