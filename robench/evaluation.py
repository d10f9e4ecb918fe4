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

from collections.abc import Sequence
from typing import cast

import numpy as np
import pandas as pd
import torch

from .attack_runtime import LazySweep, release_freed_memory
from .components import AttackResult, ThreatModel
from .counting import PassCounter, total_passes

LINF_TOL = 1e-5   # float32 rounding of x + eps
NORM_RTOL = 1e-4  # l1 / l2: relative tolerance


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
def logits(model, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """The model's float logits on ``x``, in batches on ``device``, returned on the CPU
    (the model's mode is the caller's: the host evaluates in eval mode)."""
    if not len(x):
        return torch.empty(0, 0)
    return torch.cat([model(x[start:start + batch_size].to(device)).float().cpu()
                      for start in range(0, len(x), batch_size)])


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int, device) -> tuple[torch.Tensor, ...]:
    """Predictions, softmax confidence of the prediction and top-1 minus top-2 margin."""
    preds, confs, margins = [], [], []
    for start in range(0, len(x), batch_size):
        probs = logits(model, x[start:start + batch_size], batch_size, device).softmax(1)
        top = probs.topk(min(2, probs.shape[1]), dim=1)
        preds.append(top.indices[:, 0])
        confs.append(top.values[:, 0])
        margins.append(top.values[:, 0] - top.values[:, 1] if probs.shape[1] > 1
                       else top.values[:, 0])
    return torch.cat(preds), torch.cat(confs), torch.cat(margins)


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


def _readout(result: AttackResult, i: int, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An attack's own confidence read-out at eps ``i`` (``details["readout_confidence"]``
    and ``["readout_margin"]``, ``(E, N)``), NaN where the host rejected the input or
    the attack gave none."""
    out = []
    for name in ("readout_confidence", "readout_margin"):
        values = result.details.get(name)
        if isinstance(values, torch.Tensor):
            column = values[i].detach().cpu().float().numpy()
            out.append(np.where(ok, column, np.nan))
        else:
            out.append(np.full(len(ok), np.nan, dtype="float32"))
    return out[0], out[1]


def _frame(columns: dict[str, list[np.ndarray]], epsilons, samples: np.ndarray, source: str,
           labels: np.ndarray, targets: np.ndarray | None,
           pred_clean: np.ndarray) -> pd.DataFrame:
    """The rows of every eps (eps-major), built from numpy columns."""
    num_eps = len(epsilons)
    pred_adv = np.concatenate(columns["pred_adv"]).astype("int64")
    ok = np.concatenate(columns["within_budget"]).astype(bool)
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
    label_column = pd.array(label, dtype="Int64")
    label_column[~has_label] = pd.NA
    return pd.DataFrame({
        "epsilon": np.repeat(np.asarray(epsilons, dtype="float64"), n),
        "sample": np.tile(np.asarray(samples, dtype="int64"), num_eps),
        "source": source,
        "target": (pd.array(target, dtype="Int64") if target is not None
                   else pd.array(np.full(len(label), pd.NA), dtype="Int64")),
        "label": label_column,
        "pred_clean": clean,
        "pred_adv": pred_adv,
        "distance": np.concatenate(columns["distance"]).astype("float64"),
        "confidence": np.concatenate(columns["confidence"]).astype("float32"),
        "margin": np.concatenate(columns["margin"]).astype("float32"),
        "readout_confidence": np.concatenate(columns["readout_confidence"]).astype("float32"),
        "readout_margin": np.concatenate(columns["readout_margin"]).astype("float32"),
        "forward_passes": np.concatenate(columns["forward_passes"]).astype("float64"),
        "backward_passes": np.concatenate(columns["backward_passes"]).astype("float64"),
        "within_budget": ok,
        "correct_clean": (clean == label) & has_label,
        "correct_adv": (pred_adv == label) & has_label,
        "success": success & ok,
    })


def result_rows(model, result: AttackResult, x: torch.Tensor, y: torch.Tensor,
                samples: np.ndarray, targets: torch.Tensor | None, *,
                threat_model: ThreatModel, bounds: tuple[float, float], num_classes: int,
                batch_size: int, device, examples: int = 8,
                counters: Sequence[PassCounter] = ()) -> tuple[pd.DataFrame,
                                                               dict[str, np.ndarray]]:
    """Re-check ``result`` and return (rows, example arrays for reports).

    ``x``/``y``/``samples``/``targets`` are the attacked inputs, labels, data set indices
    and targets (None when untargeted); the first ``examples`` inputs are kept as
    arrays for reports. ``result.epsilons`` must be the requested budgets. The rows
    carry every column of :data:`robench.results.RESULT_COLUMNS` except the cell and
    attack identity, which the runner adds.

    Adversarials are read one eps at a time (a lazy sweep computes each on read).
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
    n = len(x)
    pred_clean = predict(model, x, batch_size, device)[0].numpy()
    lo, hi = bounds
    num_features = int(np.prod(x.shape[1:]))
    k = min(examples, n)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in (
        "pred_adv", "distance", "confidence", "margin", "within_budget",
        "readout_confidence", "readout_margin", "forward_passes", "backward_passes")}
    kept: dict[str, list] = {"adversarial": [], "pred_adv": []}
    counted = bool(counters) and result.inputs is None
    per_eps = counted and getattr(result.adversarials, "attacks_on_read", False)
    if not per_eps:  # the whole run's passes at every eps
        nan = np.full(n, np.nan)
        forward, backward = total_passes(list(counters)) if counted else (nan, nan)
        columns["forward_passes"] = [forward] * len(result.epsilons)
        columns["backward_passes"] = [backward] * len(result.epsilons)
    if result.adversarials is not None:  # one eps at a time: a lazy sequence is not held
        for i, eps in enumerate(result.epsilons):
            if per_eps:
                for counter in counters:
                    counter.reset()
            sweep = result.adversarials
            adv = (sweep.take(i) if isinstance(sweep, LazySweep) else sweep[i]).detach()
            adv = adv.cpu().float()
            if per_eps:
                forward, backward = total_passes(list(counters))
                columns["forward_passes"].append(forward)
                columns["backward_passes"].append(backward)
            if adv.shape != x.shape:
                raise ValueError(f"attack returned adversarials of shape {tuple(adv.shape)} "
                                 f"for inputs of shape {tuple(x.shape)} at eps={eps}")
            adv = adv.clamp(lo, hi) if np.isfinite([lo, hi]).all() else adv
            dist = distances(adv - x, threat_model)
            finite = torch.isfinite(adv.flatten(1)).all(1)
            ok = within_budget(dist, eps, threat_model, num_features) & finite
            pred, conf, margin = predict(model, torch.where(
                finite.view(-1, *[1] * (adv.dim() - 1)), adv, x), batch_size, device)
            ok_np = ok.numpy()
            columns["pred_adv"].append(np.where(ok_np, pred.numpy(), pred_clean))
            columns["confidence"].append(np.where(ok_np, conf.numpy(), np.nan))
            columns["margin"].append(np.where(ok_np, margin.numpy(), np.nan))
            columns["distance"].append(dist.numpy())
            columns["within_budget"].append(ok_np)
            for name, values in zip(("readout_confidence", "readout_margin"),
                                    _readout(result, i, ok_np)):
                columns[name].append(values)
            kept["adversarial"].append(adv[:k].numpy().copy())  # not a view of all of adv
            kept["pred_adv"].append(columns["pred_adv"][-1][:k])
            del adv
            release_freed_memory()
    else:
        if result.predictions is None or result.distances is None:
            raise ValueError("an AttackResult needs adversarials, or predictions "
                             "and distances")
        for i, eps in enumerate(result.epsilons):
            pred = result.predictions[i].cpu().long()
            dist = result.distances[i].cpu().float()
            check_predictions(pred, dist, num_classes, eps)
            columns["pred_adv"].append(pred.numpy())
            columns["distance"].append(dist.numpy())
            columns["within_budget"].append(
                within_budget(dist, eps, threat_model, num_features).numpy())
            columns["confidence"].append(np.full(n, np.nan, dtype="float32"))
            columns["margin"].append(np.full(n, np.nan, dtype="float32"))
            columns["readout_confidence"].append(np.full(n, np.nan, dtype="float32"))
            columns["readout_margin"].append(np.full(n, np.nan, dtype="float32"))
    rows = _frame(columns, result.epsilons, samples, source, y.numpy(),
                  None if targets is None else targets.numpy(), pred_clean)
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
            arrays["targets"] = targets[:k].numpy()
    return rows, arrays
