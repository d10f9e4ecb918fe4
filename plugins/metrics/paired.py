"""Paired comparisons of two configurations with a two-level bootstrap interval.

Two defenses (or models) of one experiment face the same test samples and, under common
random numbers, the same perturbations; their difference in a metric is therefore best
measured *paired*: per (seed, sample) the difference of the two per-sample values, then
the mean. Its uncertainty has two sources, training noise (the seed) and the finite test
set (the samples), so the interval comes from a two-level bootstrap (Davison & Hinkley
1997, section 3.8): resample the seeds with replacement, then, within each drawn seed,
the samples with replacement, the same draw for both configurations. With a single seed
only the sample level is resampled and the interval leaves training noise out; the
result says so.

The per-sample values are the robust flags at one budget (robust accuracy is their mean)
or the per-sample normalised areas under the robust-vs-eps curve on the budgets both
curves share (the AUC is their mean, the area being linear in the curve).
"""

from __future__ import annotations

import dataclasses

from robench import Metric

DEFAULT_LEVEL = 0.9
"""Confidence level of the paired intervals unless the user asks for another."""

DEFAULT_REPLICATES = 2000
"""Bootstrap replicates unless the user asks for another number."""


@dataclasses.dataclass(frozen=True)
class PairedResult:
    """The paired difference ``A - B`` of a metric with its bootstrap interval."""

    estimate: float
    lower: float
    upper: float
    level: float
    seeds: int
    samples: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.lower > 0 or self.upper < 0

    @property
    def direction(self) -> int:
        """+1 when A is significantly above B, -1 when below, 0 when not significant."""
        return (self.lower > 0) - (self.upper < 0)

    def describe(self) -> str:
        """One line: estimate, interval, what was resampled, and significance."""
        if self.seeds > 1:
            over = f"{self.seeds} seeds x {self.samples} samples"
        else:
            over = f"{self.samples} samples of one seed; training noise not included"
        verdict = "significant" if self.significant else "not significant"
        return (f"{self.estimate:+.3f} [{self.lower:+.3f}, {self.upper:+.3f}] "
                f"({self.level:.0%} paired bootstrap over {over}; {verdict})")


def paired_difference(a, b, *, level: float = DEFAULT_LEVEL,
                      replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> PairedResult:
    """The difference ``mean(a) - mean(b)`` of paired per-sample values with a two-level
    percentile bootstrap interval at ``level``.

    ``a`` and ``b`` have shape ``(seeds, samples)``: entry ``[s, i]`` of both belongs to
    the same seed and the same test sample. Each replicate draws ``seeds`` seeds with
    replacement and, for each drawn seed, ``samples`` samples with replacement (one draw
    shared by ``a`` and ``b``); the estimate is the mean over seeds of the per-seed mean
    difference. ``seed`` seeds the bootstrap's own generator.
    """
    import numpy as np

    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    if a.ndim == 1:
        a, b = a[None], b[None]
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"a and b need the same (seeds, samples) shape, got {a.shape} and "
                         f"{b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("a and b must not contain NaN")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    diff = a - b
    n_seeds, n_samples = diff.shape
    rng = np.random.default_rng(seed)
    totals = np.empty(replicates)
    # chunks of replicates keep the index array small (replicates x seeds x samples)
    chunk = max(1, 4_000_000 // (n_seeds * n_samples))
    for start in range(0, replicates, chunk):
        k = min(chunk, replicates - start)
        seeds = rng.integers(0, n_seeds, (k, n_seeds))
        picks = rng.integers(0, n_samples, (k, n_seeds, n_samples))
        totals[start:start + k] = diff[seeds[:, :, None], picks].mean(axis=(1, 2))
    alpha = (1 - level) / 2
    lower, upper = np.quantile(totals, [alpha, 1 - alpha])
    return PairedResult(estimate=float(diff.mean()), lower=float(lower), upper=float(upper),
                        level=level, seeds=n_seeds, samples=n_samples)


def per_sample_values(results, *, attack: str, eps: float | None = None,
                      convention: str = "unconditional"):
    """Per-sample values of one attack, one column per configuration.

    Returns a frame indexed by ``(seed, sample)`` with one column per ``model/defense``:
    the robust flag at budget ``eps`` (robust accuracy is its mean), or with ``eps =
    None`` the normalised area under the sample's robust-vs-eps curve on the budgets every
    configuration shares (the AUC is its mean). ``conditional`` keeps the samples that
    every configuration of the seed classified correctly when clean.
    """
    import numpy as np
    import pandas as pd

    from . import _tables

    samples = _tables.robust_samples(results)
    samples = samples[samples["attack"] == attack]
    if samples.empty:
        raise ValueError(f"no data rows of attack {attack!r}")
    samples = samples.assign(config=samples["model"] + "/" + samples["defense"])
    if eps is not None:
        budgets = np.sort(samples["epsilon"].unique())
        close = budgets[np.isclose(budgets, eps, rtol=1e-6, atol=1e-9)]
        if not len(close):
            raise ValueError(f"attack {attack!r} has no budget {eps}; it has "
                             f"{budgets.tolist()}")
        at = samples[samples["epsilon"] == close[0]]
        wide = at.pivot_table(index=["seed", "sample"], columns="config", values="robust",
                              aggfunc="all").astype(float)
    else:
        grid, _ = _tables.common_grid(samples, ["config", "seed"])
        columns = {}
        for (config, seed), curve in samples.groupby(["config", "seed"], sort=True):
            kept = curve[curve["epsilon"].isin(grid)].pivot_table(
                index="sample", columns="epsilon", values="robust", aggfunc="all")
            index = kept.reindex(columns=grid).dropna().index
            columns.setdefault(config, []).append(pd.Series(
                _tables.sample_areas(curve, grid),
                index=pd.MultiIndex.from_product([[seed], index], names=["seed", "sample"])))
        wide = pd.DataFrame({c: pd.concat(parts) for c, parts in columns.items()})
    if convention == "conditional":
        clean = samples.drop_duplicates(["config", "seed", "sample"]).pivot_table(
            index=["seed", "sample"], columns="config", values="correct_clean", aggfunc="all")
        wide = wide[clean.reindex(wide.index).all(axis=1)]
    elif convention != "unconditional":
        raise ValueError(f"convention must be unconditional or conditional, got {convention!r}")
    return wide.dropna()


def compare(results, a: str, b: str, *, attack: str, eps: float | None = None,
            convention: str = "unconditional", level: float = DEFAULT_LEVEL,
            replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> PairedResult:
    """The paired difference ``a - b`` (configurations ``model/defense``) of robust
    accuracy at ``eps``, or of the AUC when ``eps`` is None, under ``attack``.

    Seeds and samples present for both configurations are paired; a seed counts once.
    """
    import numpy as np

    wide = per_sample_values(results, attack=attack, eps=eps, convention=convention)
    missing = [c for c in (a, b) if c not in wide.columns]
    if missing:
        raise ValueError(f"no results of {missing} under {attack!r}; have {list(wide.columns)}")
    both = wide[[a, b]]
    per_seed = [g.to_numpy() for _, g in both.groupby(level="seed", sort=True)]
    n = min(len(g) for g in per_seed)
    stacked = np.stack([g[:n] for g in per_seed])
    return paired_difference(stacked[..., 0], stacked[..., 1], level=level,
                             replicates=replicates, seed=seed)


@dataclasses.dataclass(frozen=True)
class PairedOptions:
    baseline: str = dataclasses.field(
        default="", metadata={"help": "the configuration every other one is compared with, "
                                      "as model/defense (e.g. \"cnn/pgd\"); required"})
    eps: tuple[float, ...] = dataclasses.field(
        default=(), metadata={"help": "budgets at which robust accuracy is compared (the AUC "
                                      "is always compared)"})
    convention: str = dataclasses.field(
        default="unconditional", metadata={"help": "unconditional | conditional"})
    level: float = dataclasses.field(
        default=DEFAULT_LEVEL, metadata={"help": "confidence level of the intervals"})
    replicates: int = dataclasses.field(
        default=DEFAULT_REPLICATES, metadata={"help": "bootstrap replicates"})

    def __post_init__(self):
        if self.baseline and "/" not in self.baseline:
            raise ValueError(f"baseline must name a configuration as model/defense, got "
                             f"{self.baseline!r}")
        if self.convention not in ("unconditional", "conditional"):
            raise ValueError(f"convention must be unconditional or conditional, got "
                             f"{self.convention!r}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        if self.replicates < 1:
            raise ValueError(f"replicates must be >= 1, got {self.replicates}")


class PairedDifference(Metric):
    """Paired difference of each configuration and ``baseline``, with an interval.

    For every attack and every configuration (``model/defense``) other than
    ``baseline``: the difference configuration - baseline of the AUC (rows
    ``paired_auc_difference``) and of the robust accuracy at each budget of ``eps``
    (rows ``paired_robust_accuracy_difference``, column ``epsilon``; budgets an attack
    does not sweep are left out for that attack), on the seeds and
    samples both have, with a two-level bootstrap interval (seeds, then samples) at
    ``level`` in ``lower``/``upper``. Columns ``n_seeds``, ``n`` (samples per seed),
    ``significant`` (the interval excludes 0) and ``note`` (says when one seed leaves
    training noise out).
    """

    name = "paired_difference"
    higher_is_better = True
    Options = PairedOptions

    def from_results(self, results):
        import numpy as np
        import pandas as pd

        from . import _tables

        data = _tables.data_rows(results)
        if data.empty:
            return None
        o = self.options
        if not o.baseline:
            raise ValueError("paired_difference needs the option baseline (model/defense)")
        rows = []
        for attack in sorted(data["attack"].unique()):
            configs = sorted(set(data.loc[data["attack"] == attack, "model"] + "/"
                                 + data.loc[data["attack"] == attack, "defense"]))
            if o.baseline not in configs:
                continue
            budgets = data.loc[data["attack"] == attack, "epsilon"].unique()
            present = [e for e in o.eps if np.isclose(budgets, e, rtol=1e-6, atol=1e-9).any()]
            for config in configs:
                if config == o.baseline:
                    continue
                for eps in (None, *present):
                    res = compare(results, config, o.baseline, attack=attack, eps=eps,
                                  convention=o.convention, level=o.level,
                                  replicates=o.replicates)
                    model, defense = config.split("/", 1)
                    rows.append(dict(
                        model=model, defense=defense, baseline=o.baseline, attack=attack,
                        metric="paired_auc_difference" if eps is None
                        else "paired_robust_accuracy_difference",
                        epsilon=float("nan") if eps is None else float(eps),
                        convention=o.convention, value=res.estimate, lower=res.lower,
                        upper=res.upper, level=o.level, n_seeds=res.seeds, n=res.samples,
                        significant=res.significant,
                        note="" if res.seeds > 1 else "one seed: training noise not included"))
        return pd.DataFrame(rows) if rows else None
