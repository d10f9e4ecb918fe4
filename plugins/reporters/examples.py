"""Image grids from stored artifacts: clean vs adversarial inputs at a few budgets,
fooling images (inputs generated from noise, PROTOCOLS A6) and first-layer filters (A7).

Artifacts are ``RUN_DIR/artifacts/<cell>/<attack>.npz`` with ``epsilons`` (E,), ``clean``
(k, *input_shape), ``labels`` (k,; negative for generated inputs), ``adversarial``
(E, k, *input_shape), ``pred_adv`` (E, k) and, for targeted attacks, optionally
``targets`` (k,). First layers are
``RUN_DIR/cells/<cell>/first_layer.npy``: convolution filters (out, in, kh, kw) or the
rows of a linear layer (out, features), drawn as images of the input's shape. Only the
first seed of each configuration is shown, to keep the report small.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from robench import Reporter, ReportSection

from . import _common as C

MAX_SAMPLES = 4
"""Rows (examples) per grid."""

MAX_BUDGETS = 4
"""Adversarial columns per grid (nonzero budgets spread over the stored grid)."""

MAX_FIGURES = 12
"""Grids per report; the rest are listed by name."""


def as_image(x: np.ndarray) -> tuple[np.ndarray, str | None] | None:
    """An input as something ``imshow`` draws: (H, W) grey or (H, W, 3) colour; a flat
    vector of square length becomes a square image; anything else gives None."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 3 and x.shape[0] in (1, 3):
        return (x[0], "gray") if x.shape[0] == 1 else (np.moveaxis(x, 0, -1), None)
    if x.ndim == 3:
        return x.mean(axis=0), "gray"
    if x.ndim == 1 and math.isqrt(x.size) ** 2 == x.size:
        side = math.isqrt(x.size)
        return x.reshape(side, side), "gray"
    if x.ndim == 2:
        return x, "gray"
    return None


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``, always including the last."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def first_seed_cells(record, keys) -> dict[str, str]:
    """``{cell_id: group label}`` for the first seed of each configuration, in the run's
    order of configurations."""
    import pandas as pd

    cells = C.add_group(C.cell_table(record), keys)
    if not len(cells):
        return {}
    order = {group: i for i, group in enumerate(dict.fromkeys(cells["group"]))}
    cells = cells.assign(_order=cells["group"].map(order),
                         _seed=pd.to_numeric(cells["seed"], errors="coerce"))
    firsts = cells.sort_values(["_order", "_seed"], kind="stable").drop_duplicates("group")
    return dict(zip(firsts["cell"], firsts["group"]))


def example_grid(arrays, *, title, tm, eps_scale, bounds, class_names=()):
    """Figure: rows = samples, columns = clean input then adversarial inputs at a few
    budgets (spread up to the first budget that fools every shown example); each
    adversarial panel titled with its prediction, red when the attack succeeded (the
    label changed; with an optional ``targets`` array, the target was reached)."""
    eps = np.asarray(arrays["epsilons"], dtype=float)
    clean, adv = arrays["clean"], arrays["adversarial"]
    labels, pred = np.asarray(arrays["labels"]), np.asarray(arrays["pred_adv"])
    targets = np.asarray(arrays["targets"]) if "targets" in arrays else None
    samples = list(range(min(MAX_SAMPLES, len(clean))))
    if targets is not None:
        fooled = pred[:, samples] == targets[samples]
    elif (labels[samples] >= 0).all():
        fooled = pred[:, samples] != labels[samples]
    else:  # generated inputs without a target: nothing to call a success
        fooled = np.zeros_like(pred[:, samples], dtype=bool)
    budgets = [i for i in range(len(eps)) if eps[i] > 0] or list(range(len(eps)))
    first = [b for b in budgets if fooled[b].all()]
    if first:  # stop at the first budget that fools every shown example
        budgets = [b for b in budgets if b <= first[0]]
    budgets = [budgets[i] for i in spread(len(budgets), MAX_BUDGETS)]
    lo, hi = bounds
    if not (np.isfinite(lo) and np.isfinite(hi)):
        stack = np.concatenate([clean.ravel(), adv.ravel()])
        lo, hi = float(stack.min()), float(stack.max())
    name = (lambda c: class_names[c] if 0 <= c < len(class_names) else str(c))
    fig, axes = C.new_figure(1 + len(budgets), len(samples), width=1.55, height=1.75,
                             label=title, layout=None)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02,
                        top=1 - 0.5 / (1.75 * len(samples)), wspace=0.15, hspace=0.35)
    for row, s in enumerate(samples):
        label = int(labels[s])
        head = "noise start" if label < 0 else f"clean, y={name(label)}"
        if targets is not None:
            head += f" → {name(int(targets[s]))}"
        panels = [(clean[s], head, "black")]
        for b in budgets:
            colour = "tab:red" if fooled[b, row] else \
                ("black" if label < 0 and targets is None else "tab:green")
            panels.append((adv[b, s], f"ε={C.format_eps(eps[b], tm, eps_scale)}: "
                           f"ŷ={name(int(pred[b, s]))}", colour))
        for col, (x, text, colour) in enumerate(panels):
            ax = axes[row, col]
            image = as_image(x)
            if image is not None:
                ax.imshow(image[0], cmap=image[1], vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(text, fontsize=7, color=colour)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    fig.suptitle(title, fontsize=9)
    return fig


def filter_images(weight: np.ndarray, input_shape) -> list[np.ndarray]:
    """The first layer's units as (C, h, w) arrays: convolution filters as they are,
    linear rows reshaped to the input's shape (or a square); [] when neither fits."""
    weight = np.asarray(weight, dtype=float)
    if weight.ndim == 4:
        return list(weight)
    if weight.ndim == 2:
        features = weight.shape[1]
        shape = tuple(input_shape or ())
        if shape and int(np.prod(shape)) == features:
            shape = shape if len(shape) == 3 else (1, *shape) if len(shape) == 2 else None
        else:
            shape = None
        if shape is None and math.isqrt(features) ** 2 == features:
            shape = (1, math.isqrt(features), math.isqrt(features))
        if shape is not None:
            return list(weight.reshape(len(weight), *shape))
    return []


def filter_grid(filters: list[np.ndarray], title: str):
    """Up to 64 first-layer filters: single-channel ones on a diverging scale centred at
    zero (red positive, blue negative), colour ones each scaled to its own [min, max]."""
    filters = filters[:64]
    cols = min(8, len(filters))
    rows = math.ceil(len(filters) / cols)
    fig, axes = C.new_figure(cols, rows, width=0.9, height=0.9, label=title, layout=None)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.35 / (0.9 * rows),
                        wspace=0.1, hspace=0.1)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, w in zip(axes.ravel(), filters):
        if w.shape[0] == 3:
            w = (w - w.min()) / (w.max() - w.min() or 1.0)
            ax.imshow(np.moveaxis(w, 0, -1), interpolation="nearest")
        else:
            image = w.mean(axis=0)
            limit = float(np.abs(image).max()) or 1.0
            ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    return fig


class FirstLayerFilters(Reporter):
    """First-layer filters of each configuration (PROTOCOLS A7, paper 000 Fig. 13):
    convolution kernels, or the rows of a first linear layer shown as images of the
    input."""

    name = "filters"

    def sections(self, run):
        layers = run.first_layers()
        if not layers:
            return []
        record = run.read_run()
        shown = first_seed_cells(record, C.group_keys(record))
        shape = C.data_info(record).get("input_shape")
        figures = []
        for cell, group in shown.items():
            filters = filter_images(layers[cell], shape) if cell in layers else []
            if filters:
                figures.append(filter_grid(filters, f"First-layer filters: {group}"))
        if not figures:
            return []
        text = ("The first weight layer of each configuration's model (first seed), up to "
                "64 units. Single-channel filters: red positive, blue negative weights, each "
                "on its own symmetric scale; colour filters are scaled to their own range. "
                "Paper 000 (Fig. 13) finds smoother filters with L2 weight decay, some of "
                "them exactly zero.")
        return [ReportSection(title="First-layer filters", text=text, figures=figures,
                              order=65)]


class AdversarialExamples(Reporter):
    """Grids of stored examples: clean vs adversarial inputs at a few budgets (prediction
    in red when wrong), and fooling images generated from noise."""

    name = "examples"

    def sections(self, run):
        record = run.read_run()
        artifacts = run.artifacts()
        if not artifacts:
            return []
        keys = C.group_keys(record)
        shown = first_seed_cells(record, keys)
        info = C.data_info(record)
        bounds = tuple(float(b) for b in (info.get("bounds") or (0.0, 1.0)))
        class_names = tuple(info.get("class_names") or ())
        attacks = record.get("attacks") or {}
        figures, skipped = [], []
        attack_rank = {name: i for i, name in enumerate(attacks)}
        cell_rank = {cell: i for i, cell in enumerate(shown)}
        ordered = sorted((key for key in artifacts if key[0] in shown),
                         key=lambda k: (cell_rank[k[0]], attack_rank.get(k[1], len(attacks)),
                                        k[1]))
        for cell, attack in ordered:
            arrays, group = artifacts[(cell, attack)], shown[cell]
            if {"epsilons", "clean", "adversarial", "pred_adv", "labels"} <= arrays.keys() \
                    and as_image(arrays["clean"][0]) is not None:
                tm = attacks.get(attack, {}).get("threat_model")
                title = f"{attack} on {group}"
                draw = partial(example_grid, arrays, title=title, tm=tm,
                               eps_scale=info["eps_scale"], bounds=bounds,
                               class_names=class_names)
            else:
                continue
            if len(figures) >= MAX_FIGURES:
                skipped.append(title)
                continue
            figures.append(draw())
        if not figures:
            return []
        text = ("Stored examples of the first seed of each configuration. Each row is one "
                "input: the clean image, then the adversarial input at a few budgets with "
                "the model's prediction (red: the attack succeeded — the label changed, or "
                "for a targeted attack the target, after the arrow, was reached; green: "
                "not yet). Generated inputs (fooling images) start from noise and have no "
                "label.")
        if skipped:
            text += f"\n\nNot drawn (limit of {MAX_FIGURES} grids): " + \
                ", ".join(C.inline_code(s) for s in skipped) + "."
        return [ReportSection(title="Examples", text=text, figures=figures, order=60)]
