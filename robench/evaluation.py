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

from typing import cast

import numpy as np
import pandas as pd
import torch

from .components import AttackResult, ThreatModel

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


def result_rows(model, result: AttackResult, x: torch.Tensor, y: torch.Tensor,
                samples: np.ndarray, targets: torch.Tensor | None, *,
                threat_model: ThreatModel, bounds: tuple[float, float], num_classes: int,
                batch_size: int, device,
                examples: int = 8) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Re-check ``result`` and return (rows, example arrays for reports).

    ``x``/``y``/``samples``/``targets`` are the attacked inputs, labels, data set indices
    and targets (None when untargeted); the first ``examples`` inputs are kept as
    arrays for reports. ``result.epsilons`` must be the requested budgets. The rows
    carry every column of :data:`robench.results.RESULT_COLUMNS` except the cell and
    attack identity, which the runner adds.
    """
    source = result.source
    if result.inputs is not None:
        x = result.inputs
        y = result.labels if result.labels is not None else torch.full((len(x),), -1)
        samples = np.arange(len(x))
        if result.targets is not None:
            targets = result.targets.cpu()
    n = len(x)
    pred_clean, _, _ = predict(model, x, batch_size, device)
    lo, hi = bounds
    num_features = int(np.prod(x.shape[1:]))
    label = pd.array(y.numpy(), dtype="Int64")
    label[y.numpy() < 0] = pd.NA
    target = (pd.array(targets.numpy(), dtype="Int64") if targets is not None
              else pd.array([pd.NA] * n, dtype="Int64"))
    frames = []
    k = min(examples, n)
    kept: dict[str, list] = {"adversarial": [], "pred_adv": []}
    for i, eps in enumerate(result.epsilons):
        if result.adversarials is not None:
            adv = result.adversarials[i].detach().cpu().float()
            if adv.shape != x.shape:
                raise ValueError(f"attack returned adversarials of shape {tuple(adv.shape)} "
                                 f"for inputs of shape {tuple(x.shape)} at eps={eps}")
            adv = adv.clamp(lo, hi) if np.isfinite([lo, hi]).all() else adv
            dist = distances(adv - x, threat_model)
            finite = torch.isfinite(adv.flatten(1)).all(1)
            ok = within_budget(dist, eps, threat_model, num_features) & finite
            pred, conf, margin = predict(model, torch.where(
                finite.view(-1, *[1] * (adv.dim() - 1)), adv, x), batch_size, device)
            pred = torch.where(ok, pred, pred_clean)
            conf = torch.where(ok, conf, torch.nan)
            margin = torch.where(ok, margin, torch.nan)
            kept["adversarial"].append(adv[:k].numpy())
            kept["pred_adv"].append(pred[:k].numpy())
        else:
            if result.predictions is None or result.distances is None:
                raise ValueError("an AttackResult needs adversarials, or predictions "
                                 "and distances")
            pred = result.predictions[i].cpu().long()
            dist = result.distances[i].cpu().float()
            check_predictions(pred, dist, num_classes, eps)
            ok = within_budget(dist, eps, threat_model, num_features)
            conf = margin = torch.full((n,), torch.nan)
        pred_np = pred.numpy()
        frame = pd.DataFrame({
            "epsilon": float(eps), "sample": samples, "source": source,
            "target": target, "label": label, "pred_clean": pred_clean.numpy(),
            "pred_adv": pred_np, "distance": dist.numpy().astype("float64"),
            "confidence": conf.numpy(), "margin": margin.numpy(), "within_budget": ok.numpy(),
        })
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    rows["correct_clean"] = (rows["pred_clean"] == rows["label"]).fillna(False).astype(bool)
    rows["correct_adv"] = (rows["pred_adv"] == rows["label"]).fillna(False).astype(bool)
    if targets is not None:
        success = (rows["pred_adv"] == rows["target"]).to_numpy(dtype=bool, na_value=False)
    else:  # untargeted: the label changes (or, for inputs without one, the prediction)
        reference = rows["label"].to_numpy(dtype="float64", na_value=np.nan)
        reference = np.where(np.isnan(reference), rows["pred_clean"], reference)
        success = rows["pred_adv"].to_numpy() != reference
    rows["success"] = success & rows["within_budget"].to_numpy()
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
