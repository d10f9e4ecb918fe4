"""Loss-gradient images: the input gradient of the loss of the same test inputs under every
configuration (Tsipras et al. 2019, Fig. 5 and Fig. 8), from the ``loss_gradient`` metric's
rows."""

from __future__ import annotations

import numpy as np

from robench import Reporter, ReportSection

from . import _common as C
from .examples import filter_images, first_seed_cells, mosaic_figure, to_rgba

CLIP_SIGMAS = 3.0
"""Colour gradients are clipped to +-this many standard deviations, then scaled to [0, 1]
(Tsipras et al. 2019, Fig. 5)."""

GRADIENT_CMAP = "RdBu"
"""Single-channel gradients: blue positive, red negative, white zero (Tsipras et al. 2019,
Fig. 5)."""


def gradient_tile(gradient: np.ndarray) -> np.ndarray | None:
    """One gradient, shaped like an input (C, H, W), as an RGBA tile: single-channel on
    the diverging colormap over its own symmetric range (the largest |value|), colour
    clipped to +-``CLIP_SIGMAS`` standard deviations and scaled to [0, 1]."""
    if gradient.shape[0] == 3:
        limit = CLIP_SIGMAS * float(gradient.std()) or 1.0
        return to_rgba(gradient, -limit, limit)
    limit = float(np.abs(gradient).max()) or 1.0
    return to_rgba(gradient, -limit, limit, GRADIENT_CMAP)


def input_tile(x: np.ndarray, bounds) -> np.ndarray | None:
    """One input (C, H, W) as an RGBA tile on the data bounds (its own range when they
    are infinite)."""
    lo, hi = (float(b) for b in bounds)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = float(x.min()), float(x.max())
    return to_rgba(x, lo, hi)


def gradient_figure(rows, shape, *, bounds, class_names=()):
    """Figure: the inputs in the first row, then one row of gradients per configuration.

    ``rows`` are the ``loss_gradient`` metric's rows of one cell per configuration, with a
    ``group`` column (the configuration), in the order to draw; None when the inputs are
    not drawable as images."""
    first = rows[rows["group"] == rows["group"].iloc[0]]
    samples = sorted(int(s) for s in first["sample"].unique())

    def images(frame, column):
        wide = frame.pivot_table(index="sample", columns="feature", values=column)
        return filter_images(wide.reindex(samples).to_numpy(), shape)

    inputs = images(first, "input")
    if not inputs:
        return None
    labels = first.drop_duplicates("sample").set_index("sample")["label"]

    def name(c: int) -> str:
        return class_names[c] if 0 <= c < len(class_names) else str(c)

    tiles = [[input_tile(x, bounds) for x in inputs]]
    texts = [[(f"input {s}, y={name(int(labels[s]))}", "black") for s in samples]]
    for group, frame in rows.groupby("group", sort=False):
        tiles.append([gradient_tile(g) for g in images(frame, "value")])
        texts.append([(str(group), "black")] + [None] * (len(samples) - 1))
    return mosaic_figure(tiles, texts, "Gradient of the loss with respect to the input")


class LossGradients(Reporter):
    """The input gradient of the loss of the first test inputs (columns) under every
    configuration (rows, first seed), drawn as images as in Tsipras et al. (2019),
    Robustness May Be at Odds with Accuracy, Fig. 5 and Fig. 8; reads the
    ``loss_gradient`` metric's rows (list the metric in ``[metrics] use``)."""

    name = "loss_gradients"

    def sections(self, run):
        metrics = run.metrics
        if not len(metrics) or "sample" not in metrics:
            return []
        rows = metrics[metrics["metric"] == "loss_gradient"]
        if not len(rows):
            return []
        record = run.record()
        shown = first_seed_cells(record, C.group_keys(record))
        rows = rows[rows["cell"].isin(list(shown))]
        order = {cell: i for i, cell in enumerate(shown)}
        rows = rows.assign(group=rows["cell"].map(shown),
                           _order=rows["cell"].map(order)).sort_values("_order", kind="stable")
        info = C.data_info(record)
        figure = gradient_figure(rows, info.get("input_shape"),
                                 bounds=info.get("bounds") or (0.0, 1.0),
                                 class_names=tuple(info.get("class_names") or ()))
        if figure is None:
            return []
        text = ("The gradient of each input's cross-entropy loss with respect to the input "
                "(first row: the inputs; then one row per configuration, first seed), "
                "as Tsipras et al. (2019, Fig. 5 and 8) draw it: single-channel gradients "
                "blue where positive and red where negative, each on its own symmetric "
                f"scale; colour gradients clipped to ±{CLIP_SIGMAS:g} standard deviations "
                "and scaled to [0, 1]. They find the gradients of adversarially trained "
                "models aligned with the input's salient features and those of standard "
                "models noise-like. For a linear model the gradient is "
                "(sigmoid(w·x + b) − y) w: every input shows the weights, scaled by the "
                "model's error on that input.")
        return [ReportSection(title="Loss gradients", text=text, figures=[figure], order=66)]
