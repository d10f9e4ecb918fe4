"""Per-layer singular values of a trained model's weight operators (Wen et al. 2020)."""

from __future__ import annotations

import dataclasses

from robench import Metric


@dataclasses.dataclass(frozen=True)
class SingularValuesOptions:
    max_values: int = dataclasses.field(
        default=512, metadata={"help": "most singular_value rows kept per layer (evenly "
                                       "spaced in rank); summaries use every value"})

    def __post_init__(self):
        if self.max_values < 2:
            raise ValueError(f"max_values must be >= 2, got {self.max_values}")


class SingularValues(Metric):
    """Per-layer singular values of each layer's operator, and spectral complexity.

    Wen et al. (2020) section 5.2.2, Fig. 5c/d; appendix B.2 and B.4.

    Linear layers: ``torch.linalg.svdvals`` of the weight. Convolutions (1-d and 2-d,
    grouped, dilated and strided included) are taken as the linear map they apply to
    their real input size, found by running one test input through the model. Small
    operators are measured exactly from their dense matrix (``method = "dense"``);
    larger ones by the FFT method of Sedghi, Gupta & Long (2019), exact for the
    *circular* convolution on that size (``"fft"``; ``"polyphase fft"`` for strided
    layers whose stride divides the input). The ``note`` of a layer says what an FFT
    measurement approximates (zero padding is not circular). The spectral_norm defense
    clips the same operators through the same routine (:mod:`robench_plugins.operators`).

    Rows per layer (``layer``, ``layer_index``, ``kind``, ``method``, ``input_shape``):
    ``sv_max``, ``sv_min``, ``sv_mean``, ``sv_std`` (population standard deviation),
    ``sv_count``, and ``singular_value`` rows by ``rank``; per model
    ``spectral_complexity`` (product of the layers' spectral norms, Definition 7) and
    ``spectral_complexity_log10``.
    """

    name = "singular_values"
    higher_is_better = None
    Options = SingularValuesOptions

    def from_cell(self, cell):
        from . import _tables, _weights

        x = cell.data.x_test[:1].to(cell.device)
        return _tables.or_none(_weights.singular_values(cell.model, x,
                                                        max_values=self.options.max_values))


STATISTICS = ("sv_std", "sv_max", "sv_min", "sv_mean")
"""Per-layer rows of ``singular_values`` that ``spectrum_change`` can compare."""

CHANGE_KEYS = ["dataset", "model", "seed"]
"""Columns that pair a configuration's layers with the baseline's (same model, same seed)."""


@dataclasses.dataclass(frozen=True)
class SpectrumChangeOptions:
    baseline: str = dataclasses.field(
        default="", metadata={"help": "the defense every other defense of the same model and "
                                      "seed is compared with (e.g. \"at4\"); required"})
    statistic: str = dataclasses.field(
        default="sv_std", metadata={"help": "per-layer row of singular_values compared: "
                                            + " | ".join(STATISTICS)})

    def __post_init__(self):
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got "
                             f"{self.statistic!r}")


def _summary(changes, keys: dict) -> list[dict]:
    """Count, sum and mean of one configuration's per-layer decreases and increases."""
    decreases = -changes[changes < 0]
    increases = changes[changes > 0]
    rows = [dict(keys, metric="spectrum_layers", value=float(len(changes))),
            dict(keys, metric="spectrum_net_decrease",
                 value=float(decreases.sum() - increases.sum()))]
    for name, part in (("decrease", decreases), ("increase", increases)):
        rows += [dict(keys, metric=f"spectrum_{name}_count", value=float(len(part))),
                 dict(keys, metric=f"spectrum_{name}_sum", value=float(part.sum())),
                 dict(keys, metric=f"spectrum_{name}_mean",
                      value=float(part.mean()) if len(part) else float("nan"))]
    return rows


def spectrum_change(metrics, baseline: str, statistic: str = "sv_std"):
    """Layer-by-layer change of a singular-value statistic from ``baseline`` to every
    other defense of the same dataset, model and seed (rows as :class:`SpectrumChange`
    describes); ``metrics`` holds the ``singular_values`` rows of the run."""
    import pandas as pd

    rows = metrics[metrics["metric"] == statistic]
    if rows.empty:
        raise ValueError(f"no {statistic} rows: list singular_values in [metrics] use")
    if baseline not in set(rows["defense"]):
        raise ValueError(f"baseline {baseline!r} has no {statistic} rows; defenses with "
                         f"them: {sorted(set(rows['defense']))}")
    columns = CHANGE_KEYS + ["defense", "layer", "layer_index", "kind", "method", "note",
                             "value"]
    rows = rows[[c for c in columns if c in rows.columns]]
    base = rows[rows["defense"] == baseline].drop(columns="defense")
    others = rows[rows["defense"] != baseline]
    paired = others.merge(base, on=CHANGE_KEYS + ["layer"], suffixes=("", "_baseline"))
    out = []
    for key, group in paired.groupby(CHANGE_KEYS + ["defense"], sort=True):
        group = group.sort_values("layer_index")
        identity = dict(zip(CHANGE_KEYS + ["defense"], key), baseline=baseline,
                        statistic=statistic)
        changes = group["value"] - group["value_baseline"]
        for (_, layer), change in zip(group.iterrows(), changes):
            out.append(dict(identity, metric="spectrum_change", value=float(change),
                            layer=layer["layer"], layer_index=layer["layer_index"],
                            kind=layer.get("kind"), method=layer.get("method"),
                            method_baseline=layer.get("method_baseline"),
                            note=layer.get("note")))
        out += _summary(changes.to_numpy(), identity)
    return pd.DataFrame(out) if out else None


class SpectrumChange(Metric):
    """Layer-by-layer comparison of two configurations' singular-value spectra.

    Wen, Li & Jia (2020), Fig. 1a and appendix B.2 compare the standard deviation of
    each layer's singular values of the network trained with adversarial robustness
    strength 4 (AR4: PGD training at eps 4/255) with that of AR16, layer by layer, and
    report the number and the summed size of the decreases (4.75 on CIFAR-10, ResNet-56)
    and of the increases (0.44). This metric does so for ``baseline`` and every other
    defense of the same dataset, model and seed, from the ``singular_values`` rows
    (list that metric in ``[metrics] use``): ``statistic`` (default ``sv_std``, the
    paper's) of each layer of the defense minus the baseline's.

    Rows ``spectrum_change`` per layer (``layer``, ``layer_index``, ``kind``, and
    ``method``/``method_baseline``/``note``: how each layer's singular values were
    measured, see ``singular_values``, whose rows hold the two values); per
    configuration ``spectrum_decrease_count``, ``_sum`` and ``_mean`` over the layers
    whose statistic fell (sizes as positive numbers, the paper's sum of sigma4 -
    sigma16), the same for ``spectrum_increase_*``, ``spectrum_net_decrease`` (decreases
    minus increases) and ``spectrum_layers``. Every row has ``baseline`` and
    ``statistic``. A single seed measures one training run: ``seed_summary`` over the
    rows gives intervals over seeds.
    """

    name = "spectrum_change"
    higher_is_better = None  # a flatter or steeper spectrum is neither better nor worse
    Options = SpectrumChangeOptions

    def from_metrics(self, metrics):
        if not self.options.baseline:
            raise ValueError("spectrum_change needs the option baseline (a defense name)")
        return spectrum_change(metrics, self.options.baseline, self.options.statistic)
