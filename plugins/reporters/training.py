"""Training curves: per-epoch train/test loss and accuracy of every trained cell.

Every numeric column of the stored histories gets a panel (loss and accuracy first), so
extra per-epoch measurements a defense logs appear without changes here. The table gives
the last epoch's values and the generalisation gaps of Wen et al. (2020) (accuracy
gap = train minus test accuracy, loss gap = test minus train loss), from the logged
history.
"""

from __future__ import annotations

from robench import Reporter, ReportSection

from . import _common as C

_SKIP = ("epoch", "seed", "split", *C.GROUP_KEYS, "cell", "group", "run")


def _value_columns(histories) -> list[str]:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    numeric = [c for c in histories.columns if c not in _SKIP
               and is_numeric_dtype(histories[c]) and not is_bool_dtype(histories[c])]
    first = [c for c in ("loss", "accuracy") if c in numeric]
    return first + sorted(set(numeric) - set(first))


def _figure(histories, columns, keys, order, colours, n_seeds, label, style, style_order):
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    fig, axes = C.new_figure(len(columns), width=4.6, label=label)
    for ax, column in zip(axes[0], columns):
        data, hue = C.hue_column(histories.dropna(subset=[column]), keys)
        hue_order = [g for g in order if g in set(data["group"])]
        C.styled(sns.lineplot, data=data, x="epoch", y=column, hue=hue,
                 hue_order=hue_order, palette={g: colours[g] for g in hue_order},
                 style=style, style_order=style_order,
                 errorbar=C.seed_errorbar(n_seeds)[0], ax=ax)
        ax.set_title(column)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        C.tidy_legend(ax, (hue, style), title=hue)
        if column == "accuracy":
            ax.set_ylim(-0.02, 1.02)
    return fig


def _n_seeds(frame, by) -> int:
    return int(frame.groupby(by)["seed"].nunique().max())


def _split_order(histories) -> list[str] | None:
    if "split" not in histories:
        return None
    splits = list(histories["split"].dropna().unique())
    return [s for s in ("train", "test") if s in splits] + sorted(set(splits) - {"train", "test"})


class TrainingCurves(Reporter):
    """Per-epoch loss and accuracy (train solid, test dashed) per model/defense, and a
    table of the last epoch with the generalisation gaps."""

    name = "training_curves"

    def sections(self, run):
        record = run.record()
        histories = run.histories
        if not len(histories) or "epoch" not in histories:
            return []
        keys = C.group_keys(record)
        histories = C.add_group(histories, keys)
        order = C.group_order(record, keys) or list(histories["group"].unique())
        columns = _value_columns(histories)
        n_seeds = _n_seeds(histories, ["group"])
        splits = _split_order(histories)
        fig = _figure(histories, columns, keys, order, C.palette(order), n_seeds,
                      "Training curves (line style = split)",
                      "split" if splits else None, splits)
        return [ReportSection(title="Training", text=_text(n_seeds),
                              tables=[last_epoch_table(histories, keys, order)],
                              figures=[fig], order=40)]

    def compare(self, runs):
        """Training curves of every run: colour = configuration, line style = run."""
        import pandas as pd

        frames = []
        for label, run in runs.items():
            hist = run.histories
            if len(hist) and "epoch" in hist:
                frames.append(hist.assign(run=label))
        if not frames:
            return []
        histories = pd.concat(frames, ignore_index=True)
        keys, order = C.runs_groups(run.record() for run in runs.values())
        histories = C.add_group(histories, keys)
        if "split" in histories:
            histories = histories[histories["split"] == "test"]
        order = order + sorted(set(histories["group"]) - set(order))
        fig = _figure(histories, _value_columns(histories), keys, order, C.palette(order),
                      _n_seeds(histories, ["run", "group"]),
                      "Test-split training curves (line style = run)", "run", list(runs))
        return [ReportSection(title="Training across runs",
                              text="Test split; colour = configuration, line style = run.",
                              figures=[fig], order=40)]


def _text(n_seeds: int) -> str:
    band = C.seed_errorbar(n_seeds)[1]
    return ("Curves are the per-epoch values the trainer logged" +
            (f", mean over seeds (bands: {band})" if band else "") +
            ". The table shows the last epoch; accuracy gap = train − test accuracy and "
            "loss gap = test − train loss (Wen et al.'s generalisation gap, here from the "
            "logged history; the `ge_gap` metric, when present, measures it in eval mode).")


def last_epoch_table(histories, keys, order):
    """Last-epoch train/test loss and accuracy per group (mean over seeds) and the gaps."""
    import pandas as pd

    last = histories[histories["epoch"] == histories.groupby("cell")["epoch"].transform("max")]
    rows = []
    for group in [g for g in order if g in set(last["group"])]:
        part = last[last["group"] == group]
        row = {" / ".join(keys): group, "epochs": int(part["epoch"].max())}
        for split in ("train", "test"):
            chunk = part[part["split"] == split] if "split" in part else part.iloc[0:0]
            for column in ("loss", "accuracy"):
                if column in chunk and len(chunk):
                    row[f"{split} {column}"] = float(chunk[column].mean())
        if {"train accuracy", "test accuracy"} <= row.keys():
            row["accuracy gap"] = row["train accuracy"] - row["test accuracy"]
        if {"train loss", "test loss"} <= row.keys():
            row["loss gap"] = row["test loss"] - row["train loss"]
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["title"] = "Last epoch (mean over seeds)"
    return table
