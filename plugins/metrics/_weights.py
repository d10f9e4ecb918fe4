"""Computations that need a trained model, its weights or its data (imports torch).

Private implementation of the per-cell metrics (``Metric.from_cell``); imported only
inside their methods. Every function returns tidy rows (``metric``, ``value`` plus the
columns it groups by); the runner adds the cell's identity columns.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..operators import layer_singular_values

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


# ------------------------------------------------------------------- singular values


def weight_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, tuple]]:
    """Linear and 1-d/2-d convolution layers in the order the forward pass uses them,
    each with the shape of its input (without the batch dimension), found with forward
    hooks on one input ``x`` (a batch of one). A layer used twice is listed once."""
    found: dict[str, tuple[str, nn.Module, tuple]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            def hook(mod, inputs, output, name=name):
                found.setdefault(name, (name, mod, tuple(inputs[0].shape[1:])))
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    return list(found.values())


def _subsample(values: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` (rank, value) pairs evenly spaced in rank, first and last kept."""
    if len(values) <= limit:
        ranks = np.arange(len(values))
    else:
        ranks = np.unique(np.linspace(0, len(values) - 1, limit).round().astype(int))
    return ranks, values[ranks]


def singular_values(model: nn.Module, x: torch.Tensor, *, max_values: int) -> pd.DataFrame:
    """Per-layer singular-value spectra and summaries, plus the spectral complexity.

    ``x`` (one input, on the model's device) is run through the model to find each
    layer's input size.

    Rows per layer (``layer`` = module name, ``layer_index`` = forward order, ``kind``,
    ``method`` and ``note``: how the values were measured and what that measurement
    approximates, see :func:`robench_plugins.operators.layer_singular_values`):
    ``sv_max``, ``sv_min``, ``sv_mean``, ``sv_std`` (population standard deviation, the
    spread Wen et al. (2020) Fig. 5c/d plots), ``sv_count`` and up to ``max_values``
    ``singular_value`` rows (``rank`` 0 = largest; evenly spaced in rank when there are
    more). Then ``spectral_complexity`` = product of every layer's largest singular
    value (Wen et al. 2020, appendix B.4, Definition 7) and its ``log10``.
    """
    rows = []
    spectral = []
    for index, (name, module, in_shape) in enumerate(weight_layers(model, x)):
        values, method, note = layer_singular_values(module, in_shape)
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        base = dict(layer=name, layer_index=index, kind=kind, method=method, note=note,
                    input_shape="x".join(map(str, in_shape)))
        for metric, value in (("sv_max", values[0]), ("sv_min", values[-1]),
                              ("sv_mean", values.mean()), ("sv_std", values.std()),
                              ("sv_count", len(values))):
            rows.append({**base, "metric": metric, "value": float(value)})
        ranks, kept = _subsample(values, max_values)
        rows.extend({**base, "metric": "singular_value", "rank": int(r), "value": float(v)}
                    for r, v in zip(ranks, kept))
        spectral.append(values[0])
    if spectral:
        # a zero layer (e.g. Fixup's init) gives -inf; very deep nets may overflow to inf
        with np.errstate(divide="ignore", over="ignore"):
            log = float(np.sum(np.log10(spectral)))
            product = float(np.power(10.0, log))
        rows.append({"metric": "spectral_complexity", "value": product})
        rows.append({"metric": "spectral_complexity_log10", "value": log})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- margins and losses


def logits_of(model: nn.Module, x: torch.Tensor, device, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` in eval mode, on the CPU (the host's
    :func:`robench.evaluation.logits`, which the result rows' predictions come from)."""
    from robench.evaluation import logits

    was_training = model.training
    model.eval()
    try:
        return logits(model, x, batch_size, device)
    finally:
        model.train(was_training)


def per_sample_quantities(logits: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """Logit margin, true-class probability and cross-entropy loss of each sample.

    Margin = logit of the true class minus the largest other logit (Wen et al. 2020, section 3,
    the margin operator; negative when misclassified).
    """
    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf"))
    return {"logit_margin": (true - others.amax(1)).numpy(),
            "true_class_probability": logits.softmax(1).gather(1, y[:, None])[:, 0].numpy(),
            "loss": F.cross_entropy(logits, y, reduction="none").numpy()}


def distribution_rows(values: np.ndarray, name: str, *, bins: int,
                      value_range: tuple[float, float], quantiles: int) -> list[dict]:
    """Summary, quantile and histogram rows of one sample of values.

    Histogram rows (``<name>_hist``) hold the *fraction* of values per bin
    (``bin_left``/``bin_right``); values beyond the range fall into the end bins.
    """
    rows = [{"metric": f"{name}_mean", "value": float(values.mean())},
            {"metric": f"{name}_std", "value": float(values.std())},
            {"metric": f"{name}_median", "value": float(np.median(values))}]
    qs = np.linspace(0, 1, quantiles)
    rows.extend({"metric": f"{name}_quantile", "quantile": float(q), "value": float(v)}
                for q, v in zip(qs, np.quantile(values, qs)))
    lo, hi = value_range
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    rows.extend({"metric": f"{name}_hist", "bin_left": float(a), "bin_right": float(b),
                 "value": float(c / len(values))}
                for a, b, c in zip(edges[:-1], edges[1:], counts))
    return rows


def margin_rows(model: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                device, *, bins: int, quantiles: int, loss_max: float) -> pd.DataFrame:
    """Distributions of logit margin, true-class probability and loss per split.

    Probability histograms span [0, 1]; loss histograms [0, ``loss_max``]; margin
    histograms the symmetric range of the largest absolute margin of the cell.
    """
    rows = []
    for split, (x, y) in splits.items():
        values = per_sample_quantities(logits_of(model, x, device), y.cpu())
        spread = float(np.abs(values["logit_margin"]).max()) or 1.0
        ranges = {"logit_margin": (-spread, spread), "true_class_probability": (0.0, 1.0),
                  "loss": (0.0, loss_max)}
        for name, sample in values.items():
            for row in distribution_rows(sample, name, bins=bins, value_range=ranges[name],
                                         quantiles=quantiles):
                rows.append({**row, "split": split, "n": len(sample)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------- attacks and gaps


def adversarials(attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 eps: float, bounds: tuple[float, float], device, seed: int,
                 batch_size: int = 256) -> torch.Tensor:
    """``attack.perturb`` at ``eps`` on ``x`` in batches, seeded by ``seed``; on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    out = [attack.perturb(model, x[i:i + batch_size].to(device), y[i:i + batch_size].to(device),
                          eps, bounds=bounds, generator=generator).detach().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def loss_and_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample cross-entropy and correctness of ``model`` in eval mode."""
    logits = logits_of(model, x, device)
    y = y.cpu()
    return (F.cross_entropy(logits, y, reduction="none").numpy(),
            (logits.argmax(1) == y).numpy())


def gap_rows(train: tuple[float, float], test: tuple[float, float], **columns) -> list[dict]:
    """GE-gap rows from (loss, accuracy) on the train and test sets (Wen et al. 2020,
    Table 6): ``accuracy_gap`` = train - test accuracy, ``loss_gap`` = test - train loss;
    accuracies are better higher, losses and gaps lower (``higher_is_better``)."""
    (train_loss, train_acc), (test_loss, test_acc) = train, test
    values = {"train_accuracy": train_acc, "test_accuracy": test_acc,
              "train_loss": train_loss, "test_loss": test_loss,
              "accuracy_gap": train_acc - test_acc, "loss_gap": test_loss - train_loss}
    return [{"metric": k, "value": float(v), "higher_is_better": k.endswith("accuracy"),
             **columns} for k, v in values.items()]


def clean_gap(history: pd.DataFrame, model: nn.Module, data, device) -> list[dict]:
    """Clean GE gap from the last epoch of the training history (measured there in eval
    mode on the full splits); recomputed from the model when there is no history."""
    if history is not None and len(history):
        last = history[history["epoch"] == history["epoch"].max()].set_index("split")
        epoch = int(history["epoch"].max())
        pair = {s: (float(last.loc[s, "loss"]), float(last.loc[s, "accuracy"]))
                for s in ("train", "test")}
        note = f"training history, epoch {epoch} (eval mode)"
    else:
        pair = {}
        for split, (x, y) in (("train", (data.x_train, data.y_train)),
                              ("test", (data.x_test, data.y_test))):
            loss, correct = loss_and_correct(model, x, y, device)
            pair[split] = (float(loss.mean()), float(correct.mean()))
        note = "recomputed from the model (no training history)"
    return gap_rows(pair["train"], pair["test"], condition="clean", note=note)


def attacked(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device, *, eps: float,
             attack, bounds: tuple[float, float], seed: int) -> dict[str, np.ndarray]:
    """Per-sample clean loss, adversarial loss and adversarial correctness under
    ``attack`` at ``eps`` (:func:`adversarials`)."""
    adv = adversarials(attack, model, x, y, eps=eps, bounds=bounds, device=device, seed=seed)
    adv_loss, adv_correct = loss_and_correct(model, adv, y, device)
    clean_loss, _ = loss_and_correct(model, x, y, device)
    return {"adv_loss": adv_loss, "adv_correct": adv_correct, "clean_loss": clean_loss}


def attacked_gap(model: nn.Module, data, device, *, eps: float, attack, samples: int,
                 seed: int) -> list[dict]:
    """GE gap under ``attack`` on the first ``samples`` training and test inputs (Wen et
    al. 2020, section 5.1, "clean and under attack"): rows with ``condition = "pgd"``."""
    pair = {}
    for split, (x, y) in (("train", (data.x_train, data.y_train)),
                          ("test", (data.x_test, data.y_test))):
        out = attacked(model, x[:samples], y[:samples], device, eps=eps, attack=attack,
                       bounds=data.info.bounds, seed=seed)
        pair[split] = (float(out["adv_loss"].mean()), float(out["adv_correct"].mean()))
    return gap_rows(pair["train"], pair["test"], condition="attacked", epsilon=eps,
                    note=attack_note(attack, eps), n=min(samples, len(data.x_test)))


def attack_note(attack, eps: float) -> str:
    """The attack behind attacked rows, for their ``note``: component, options and eps."""
    return f"{attack!r} at eps={eps:g}"


def loss_variation(model: nn.Module, data, device, *, eps: float, attack, samples: int,
                   seed: int) -> list[dict]:
    """Average maximal loss variation (Wen et al. 2020, appendix B.5): over the first
    ``samples`` test inputs, the mean and standard deviation of loss(adversarial) -
    loss(clean), the adversarial made by ``attack`` within the budget ``eps``."""
    x, y = data.x_test[:samples], data.y_test[:samples]
    out = attacked(model, x, y, device, eps=eps, attack=attack, bounds=data.info.bounds,
                   seed=seed)
    variation = out["adv_loss"] - out["clean_loss"]
    note = attack_note(attack, eps)
    return [{"metric": "loss_variation_mean", "value": float(variation.mean()), "epsilon": eps,
             "n": len(variation), "note": note},
            {"metric": "loss_variation_std", "value": float(variation.std()), "epsilon": eps,
             "n": len(variation), "note": note}]


# ------------------------------------------------------------------ linear models


@torch.no_grad()
def affine_map(model: nn.Module, x: torch.Tensor, device, *, checks: int = 8,
               rtol: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(W, b)`` with ``logits = W @ x.flatten() + b`` when ``model`` is affine in its
    input; ``None`` otherwise.

    Found by probing the function, not by reading layers, so it sees through in-model
    normalisation, two-logit wrappers of a single score and weight parametrisations:
    ``f(a x1 + c x2) - f(0) = a (f(x1) - f(0)) + c (f(x2) - f(0))`` is checked on
    ``checks`` pairs of the given inputs ``x`` (with a = 3.7, c = -2.2, far outside the
    data), then ``W`` is read column by column from the basis vectors in float64.
    """
    model.eval()
    x = x[:2 * checks].to(device).float()
    if len(x) < 2:
        return None
    f0 = model(torch.zeros_like(x[:1]))
    fx = model(x) - f0
    half = len(x) // 2
    x1, x2, g1, g2 = x[:half], x[half:2 * half], fx[:half], fx[half:2 * half]
    mixed = model(3.7 * x1 - 2.2 * x2) - f0
    scale = float(fx.abs().max()) * 6 + 1e-6
    if not torch.allclose(mixed, 3.7 * g1 - 2.2 * g2, rtol=0.0, atol=rtol * scale):
        return None
    import copy

    model64 = copy.deepcopy(model).cpu().double().eval()
    shape = tuple(x.shape[1:])
    d = math.prod(shape)
    b = model64(torch.zeros((1, *shape), dtype=torch.float64))[0]
    columns = []
    for start in range(0, d, 1024):
        rows = torch.arange(start, min(start + 1024, d))
        basis = torch.zeros(len(rows), d, dtype=torch.float64)
        basis[torch.arange(len(rows)), rows] = 1.0
        columns.append(model64(basis.reshape(-1, *shape)) - b)
    return torch.cat(columns).T, b


def binary_direction(weight: torch.Tensor, bias: torch.Tensor
                     ) -> tuple[torch.Tensor, float] | None:
    """Normal ``w`` and offset ``b`` of a binary linear classifier's boundary, pointing
    towards class 1: one logit -> itself; two logits -> class 1 minus class 0."""
    if weight.shape[0] == 1:
        return weight[0], float(bias[0])
    if weight.shape[0] == 2:
        return weight[1] - weight[0], float(bias[1] - bias[0])
    return None


def weight_rms(model: nn.Module) -> float:
    """Root mean square of every weight (parameters with 2+ dimensions; Tanay & Griffin (2016))."""
    weights = [p.detach().double().flatten() for p in model.parameters() if p.dim() > 1]
    if not weights:
        return float("nan")
    flat = torch.cat(weights)
    return float(flat.pow(2).mean().sqrt())


def tilting(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: float) -> list[dict]:
    """Boundary tilting of a binary linear classifier (Tanay & Griffin 2016, "Adversarial Distance
    and Tilting Angle").

    With ``i``/``j`` the centroids of classes 0/1 and ``z = j - i`` the normal of the
    nearest-centroid classifier: ``tilting_angle`` = angle between ``w`` and ``z``
    (radians, in [0, pi]); ``d_adv`` = 1/2 ||j - i|| cos(theta), the paper's closed form
    for balanced classes; ``d_adv_empirical`` = mean over samples of y * d(x), the signed
    distance to the boundary ``w.x + b = 0`` with y in {-1, +1} (equal to ``d_adv`` when
    the classes are balanced); ``centroid_distance`` = ||j - i||.
    """
    x = x.flatten(1).double()
    i, j = x[y == 0].mean(0), x[y == 1].mean(0)
    z = j - i
    cos = float(torch.dot(w, z) / (w.norm() * z.norm()))
    cos = min(1.0, max(-1.0, cos))
    signed = (x @ w + b) / w.norm()
    sign = (2 * (y == 1).double() - 1)
    balanced = int((y == 0).sum()) == int((y == 1).sum())
    return [{"metric": "tilting_angle", "value": math.acos(cos)},
            {"metric": "d_adv", "value": 0.5 * float(z.norm()) * cos},
            {"metric": "d_adv_empirical", "value": float((sign * signed).mean()),
             "note": "" if balanced else "classes unbalanced: differs from d_adv"},
            {"metric": "centroid_distance", "value": float(z.norm())},
            {"metric": "weight_norm", "value": float(w.norm())}]


def feature_correlations(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Pearson correlation of every (flattened) input feature with the label in {-1, +1}
    (Tsipras et al. 2019, section 2.3, Fig. 2b); constant features get 0."""
    x = x.flatten(1).double()
    s = 2 * (y == 1).double() - 1
    xc, sc = x - x.mean(0), s - s.mean()
    denom = xc.norm(dim=0) * sc.norm()
    corr = (xc * sc[:, None]).sum(0) / torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, corr, torch.zeros_like(corr)).numpy()


def most_correlated(corr: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` features with the largest absolute label correlation, in
    decreasing order (ties by feature index)."""
    return np.argsort(-np.abs(corr), kind="stable")[:k]


def robust_feature_rows(corr: np.ndarray, w: np.ndarray | None, *, top_k: int,
                        per_feature: bool) -> list[dict]:
    """Rows relating the label correlation of each feature to the weight a linear model
    puts on it (Tsipras et al. 2019, section 2.3): per feature (``feature`` column)
    ``feature_correlation`` and ``feature_weight``; ``weight_l1`` (Table 4's ||w||_1);
    ``weight_correlation_alignment`` = Pearson correlation of w with the feature
    correlations; ``top_k_weight_share`` = share of ||w||_1 on the ``top_k`` features
    most correlated (in absolute value) with the label."""
    rows = []
    if per_feature:
        rows.extend({"metric": "feature_correlation", "feature": int(f), "value": float(c)}
                    for f, c in enumerate(corr))
    if w is None:
        return rows
    if per_feature:
        rows.extend({"metric": "feature_weight", "feature": int(f), "value": float(v)}
                    for f, v in enumerate(w))
    top = most_correlated(corr, top_k)
    l1 = float(np.abs(w).sum())
    rows.append({"metric": "weight_l1", "value": l1})
    rows.append({"metric": "weight_correlation_alignment",
                 "value": float(np.corrcoef(w, corr)[0, 1]) if w.std() and corr.std()
                 else float("nan")})
    rows.append({"metric": "top_k_weight_share", "value": float(np.abs(w[top]).sum() / l1)
                 if l1 else float("nan"), "k": top_k})
    return rows
