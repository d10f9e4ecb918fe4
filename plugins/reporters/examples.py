"""Image grids from stored artifacts: clean vs adversarial inputs at a few budgets,
fooling images (inputs generated from noise) and first-layer filters.

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

import numpy as np

from robench import Reporter, ReportSection

from . import _common as C

MAX_SAMPLES = 4
"""Rows (examples) per grid."""

MAX_BUDGETS = 4
"""Adversarial columns per grid (nonzero budgets spread over the stored grid)."""


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


def to_rgba(x: np.ndarray, lo: float, hi: float, cmap: str = "gray") -> np.ndarray | None:
    """One input as an (H, W, 4) float image: grey inputs through ``cmap`` on [lo, hi],
    colour inputs scaled from [lo, hi] to [0, 1]; None when it is not drawable."""
    from matplotlib import colormaps

    image = as_image(x)
    if image is None:
        return None
    pixels = (np.asarray(image[0], dtype=float) - lo) / ((hi - lo) or 1.0)
    if image[1] is None:  # colour
        return np.concatenate([np.clip(pixels, 0, 1), np.ones(pixels.shape[:2] + (1,))], -1)
    return colormaps[cmap](np.clip(pixels, 0, 1))


def mosaic_figure(tiles, labels, title: str, *, tile_width: float = 1.5):
    """One figure, one axes: a grid of RGBA tiles (rows of equal-shape (H, W, 4) arrays,
    None for an empty cell) with a small coloured label above each tile.

    Drawing one image instead of one axes per tile keeps large grids fast to render.
    ``labels`` mirrors ``tiles`` with ``(text, colour)`` or None.
    """
    first = next(t for row in tiles for t in row if t is not None)
    h, w = first.shape[:2]
    gap_x = max(1, int(np.ceil(0.12 * w)))
    gap_y = max(1, int(np.ceil((0.25 if any(any(r) for r in labels) else 0.12) * h)))
    n_rows, n_cols = len(tiles), max(len(row) for row in tiles)
    canvas = np.zeros((n_rows * (h + gap_y), n_cols * (w + gap_x) - gap_x, 4))
    fig_w = tile_width * n_cols
    fig_h = fig_w * canvas.shape[0] / canvas.shape[1] + 0.35
    fig, axes = C.new_figure(1, 1, width=fig_w, height=fig_h, label=title, layout=None)
    ax = axes[0, 0]
    ax.set_position((0.005, 0.005, 0.99, 1 - 0.36 / fig_h))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            top, left = r * (h + gap_y) + gap_y, c * (w + gap_x)
            if tile is not None:
                canvas[top:top + h, left:left + w] = tile
            label = labels[r][c] if c < len(labels[r]) else None
            if label:
                ax.text(left + w / 2 - 0.5, top - 0.8, label[0], ha="center", va="bottom",
                        fontsize=7, color=label[1])
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    return fig


def example_grid(arrays, *, title, tm, eps_scale, bounds, class_names=(), row_names=()):
    """Figure: rows = samples, columns = clean input then adversarial inputs at a few
    budgets (spread up to the first budget that fools every shown example); each
    adversarial tile labelled with its prediction, red when the attack succeeded (the
    label changed; with an optional ``targets`` array, the target was reached).
    ``row_names`` (one per row) head each row, e.g. the configuration it comes from;
    with them every row is drawn, else the first ``MAX_SAMPLES``."""
    eps = np.asarray(arrays["epsilons"], dtype=float)
    clean, adv = arrays["clean"], arrays["adversarial"]
    labels, pred = np.asarray(arrays["labels"]), np.asarray(arrays["pred_adv"])
    targets = np.asarray(arrays["targets"]) if "targets" in arrays else None
    samples = list(range(len(clean) if row_names else min(MAX_SAMPLES, len(clean))))
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

    def name(c: int) -> str:
        return class_names[c] if 0 <= c < len(class_names) else str(c)

    tiles, texts = [], []
    for row, s in enumerate(samples):
        label = int(labels[s])
        head = "noise start" if label < 0 else f"clean, y={name(label)}"
        if row_names:
            head = f"{row_names[row]}: {head}"
        if targets is not None:
            head += f" → {name(int(targets[s]))}"
        tiles.append([to_rgba(clean[s], lo, hi)] + [to_rgba(adv[b, s], lo, hi)
                                                    for b in budgets])
        texts.append([(head, "black")] + [
            (f"ε={C.format_eps(eps[b], tm, eps_scale)}: ŷ={name(int(pred[b, s]))}",
             "tab:red" if fooled[b, row] else
             ("black" if label < 0 and targets is None else "tab:green"))
            for b in budgets])
    return mosaic_figure(tiles, texts, title)


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
    """Up to 64 first-layer filters, 8 per row: single-channel ones on a diverging scale
    centred at zero (red positive, blue negative, each on its own symmetric range),
    colour ones each scaled to its own [min, max]."""
    tiles = []
    for w in filters[:64]:
        if w.shape[0] == 3:
            tiles.append(to_rgba(w, float(w.min()), float(w.max()) + 1e-12))
        else:
            limit = float(np.abs(w.mean(axis=0)).max()) or 1.0
            tiles.append(to_rgba(w.mean(axis=0, keepdims=True), -limit, limit, "RdBu_r"))
    rows = [tiles[i:i + 8] for i in range(0, len(tiles), 8)]
    return mosaic_figure(rows, [[None] * len(r) for r in rows], title, tile_width=0.9)


def one_input_per_configuration(artifacts, cells: dict[str, str], attack: str):
    """The first stored input of ``attack`` in every shown cell, as one artifact (rows =
    configurations, in ``cells``' order) and the configurations' names; None when no
    cell has a drawable artifact or their budgets differ."""
    keys = ("epsilons", "clean", "adversarial", "pred_adv", "labels")
    found = [(group, artifacts[(cell, attack)]) for cell, group in cells.items()
             if (cell, attack) in artifacts and set(keys) <= artifacts[(cell, attack)].keys()
             and len(artifacts[(cell, attack)]["clean"])
             and as_image(artifacts[(cell, attack)]["clean"][0]) is not None]
    if not found or any(not np.array_equal(a["epsilons"], found[0][1]["epsilons"])
                        for _, a in found):
        return None
    merged = {"epsilons": found[0][1]["epsilons"],
              "clean": np.stack([a["clean"][0] for _, a in found]),
              "adversarial": np.stack([a["adversarial"][:, 0] for _, a in found], axis=1),
              "pred_adv": np.stack([a["pred_adv"][:, 0] for _, a in found], axis=1),
              "labels": np.array([a["labels"][0] for _, a in found])}
    if all("targets" in a for _, a in found):
        merged["targets"] = np.array([a["targets"][0] for _, a in found])
    return merged, [group for group, _ in found]


class FirstLayerFilters(Reporter):
    """First-layer filters of each configuration (Galloway et al. 2018, Fig. 13):
    convolution kernels, or the rows of a first linear layer shown as images of the
    input. Opt-in: list ``filters`` in ``[report] reporters``."""

    name = "filters"
    by_default = False

    def sections(self, run):
        layers = run.first_layers()
        if not layers:
            return []
        record = run.record()
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
                "Galloway et al. (2018, Fig. 13) find smoother filters with L2 weight "
                "decay, some of them exactly zero.")
        return [ReportSection(title="First-layer filters", text=text, figures=figures,
                              order=65)]


class AdversarialExamples(Reporter):
    """One grid per attack: the same input under every configuration (rows), clean and
    adversarial at a few budgets, the prediction in red when the attack succeeded."""

    name = "examples"

    def sections(self, run):
        record = run.record()
        artifacts = run.artifacts()
        if not artifacts:
            return []
        shown = first_seed_cells(record, C.group_keys(record))
        info = C.data_info(record)
        bounds = tuple(float(b) for b in (info.get("bounds") or (0.0, 1.0)))
        class_names = tuple(info.get("class_names") or ())
        stored = {attack for _, attack in artifacts}
        attacks = [a for a in record.attacks if a in stored] + sorted(stored - set(record.attacks))
        figures = []
        for attack in attacks:
            merged = one_input_per_configuration(artifacts, shown, attack)
            if merged is None:
                continue
            arrays, groups = merged
            figures.append(example_grid(
                arrays, title=f"{attack}: the same input under every configuration",
                tm=C.threat_model_of(record, attack), eps_scale=info["eps_scale"],
                bounds=bounds, class_names=class_names, row_names=groups))
        if not figures:
            return []
        text = ("One grid per attack: each row is the first stored input of that attack "
                "under one configuration (first seed), the clean input, then the "
                "adversarial input at a few budgets with the model's prediction (red: the "
                "attack succeeded — the label changed, or for a targeted attack the target, "
                "after the arrow, was reached; green: not yet). Generated inputs (fooling "
                "images) start from noise and have no label.")
        return [ReportSection(title="Examples", text=text, figures=figures, order=60)]
