"""The figure of Tanay & Griffin (2016)'s LeNet experiment: for a targeted minimal attack,
one input of each class under every configuration, with its adversarial and its
perturbation.

Drawn from the stored artifacts alone (``RUN_DIR/artifacts/<cell>/<attack>.npz``, see
:mod:`.examples`): a minimal attack's adversarial at the largest stored budget is its
candidate whenever the search found one within the grid, so nothing is recomputed.
"""

from __future__ import annotations

import numpy as np

from robench import Reporter, ReportSection

from . import _common as C
from .examples import first_seed_cells, mosaic_figure, to_rgba

ROWS = ("original", "adversarial", "perturbation")
"""The three image rows of each configuration."""


def first_of_each_class(labels) -> dict[int, int]:
    """``{class: index}`` of the first stored input of each class (sorted by class)."""
    first: dict[int, int] = {}
    for i, label in enumerate(np.asarray(labels).tolist()):
        first.setdefault(int(label), i)
    return dict(sorted(first.items()))


def perturbation_rows(arrays) -> list[dict]:
    """One entry per class of the stored inputs: the index, label, target, clean input,
    adversarial (the largest stored budget's) and the model's prediction on it, the
    perturbation, its L2 norm and whether the target was reached there (otherwise the
    stored adversarial is the clean input)."""
    rows = []
    for label, i in first_of_each_class(arrays["labels"]).items():
        clean = np.asarray(arrays["clean"][i], dtype=float)
        adv = np.asarray(arrays["adversarial"][-1, i], dtype=float)
        target = int(arrays["targets"][i])
        rows.append(dict(index=i, label=label, target=target, clean=clean, adversarial=adv,
                         prediction=int(arrays["pred_adv"][-1, i]), perturbation=adv - clean,
                         norm=float(np.linalg.norm((adv - clean).ravel())),
                         reached=int(arrays["pred_adv"][-1, i]) == target))
    return rows


def perturbation_figure(blocks: list[tuple[str, list[dict]]], title: str, bounds):
    """Figure: for each configuration three rows (original with its label and target,
    adversarial with the prediction, perturbation), one column per class. Perturbations
    share one symmetric grey scale (mid-grey is 0), so their sizes compare across
    configurations; each is labelled with its L2 norm."""
    classes = sorted({r["label"] for _, rows in blocks for r in rows})
    limit = max((float(np.abs(r["perturbation"]).max()) for _, rows in blocks for r in rows),
                default=0.0) or 1.0
    lo, hi = bounds
    tiles, texts = [], []
    for group, rows in blocks:
        by_class = {r["label"]: r for r in rows}
        for kind in ROWS:
            tile_row, text_row = [], []
            for c in classes:
                r = by_class.get(c)
                if r is None:
                    tile_row.append(None)
                    text_row.append(None)
                    continue
                if kind == "perturbation":
                    tile_row.append(to_rgba(r["perturbation"], -limit, limit))
                    text_row.append((f"L2 {r['norm']:.2f}" if r["reached"] else "not found",
                                     "black" if r["reached"] else "tab:red"))
                else:
                    tile_row.append(to_rgba(r["clean" if kind == "original" else "adversarial"],
                                            lo, hi))
                    head = f"{group}: " if c == classes[0] and kind == "original" else ""
                    text_row.append((f"{head}{c} → {r['target']}" if kind == "original"
                                     else f"ŷ={r['prediction']}", "black"))
            tiles.append(tile_row)
            texts.append(text_row)
    return mosaic_figure(tiles, texts, title, tile_width=1.0)


def minimal_targeted_attacks(record, artifacts) -> list[str]:
    """Attacks of the run whose every finished unit is a minimal search and whose
    artifacts hold targets."""
    out = []
    for attack in record.attacks:
        units = [u for u in record.units.values() if u.attack == attack and u.status == "done"]
        stored = [a for (_, name), a in artifacts.items() if name == attack]
        if (units and all(u.details.get("minimal") for u in units) and stored
                and all("targets" in a for a in stored)):
            out.append(attack)
    return out


class TargetedPerturbations(Reporter):
    """Original, adversarial and perturbation of one input of each class, for every
    configuration, under each targeted minimal attack (Tanay & Griffin 2016's LeNet
    figure, with the high_confidence attack and cyclic targets)."""

    name = "perturbations"

    def sections(self, run):
        import pandas as pd

        record = run.record()
        artifacts = run.artifacts()
        attacks = minimal_targeted_attacks(record, artifacts) if artifacts else []
        if not attacks:
            return []
        shown = first_seed_cells(record, C.group_keys(record))
        info = C.data_info(record)
        bounds = tuple(float(b) for b in (info.get("bounds") or (0.0, 1.0)))
        figures, tables = [], []
        for attack in attacks:
            blocks = [(group, perturbation_rows(artifacts[(cell, attack)]))
                      for cell, group in shown.items() if (cell, attack) in artifacts]
            if not blocks:
                continue
            figures.append(perturbation_figure(
                blocks, f"{attack}: one input of each class, its adversarial and perturbation",
                bounds))
            table = pd.DataFrame([dict(configuration=group, label=r["label"],
                                       target=r["target"], l2_norm=r["norm"] if r["reached"]
                                       else float("inf")) for group, rows in blocks
                                  for r in rows])
            wide = table.pivot(index="configuration", columns="label", values="l2_norm")
            wide = wide.reindex([g for g, _ in blocks]).reset_index()
            wide.columns = [str(c) for c in wide.columns]
            wide.attrs["title"] = f"{attack}: L2 norm of each shown perturbation, by class"
            tables.append(wide)
        text = ("For each configuration (first seed), the first stored input of each class, "
                "its targeted adversarial at the largest budget of the grid (the minimal "
                "attack's candidate) and the perturbation, with its L2 norm in the data's "
                "units (inf, \"not found\": the search did not reach its target within the "
                "grid). Perturbations share one symmetric grey scale, mid-grey = 0. Tanay & "
                "Griffin (2016) show this figure for LeNet with low and high weight decay: "
                "the high-decay network's perturbations are larger and more meaningful to "
                "a human observer.")
        return [ReportSection(title="Targeted perturbations", text=text, figures=figures,
                              tables=tables, order=62)]
