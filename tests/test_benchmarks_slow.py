"""Runs of the small benchmark variants and the papers' claims they must show.

Marked slow (each run takes minutes on a 2-core CPU): ``pytest -m slow
tests/test_benchmarks_slow.py``. Every test runs one benchmarks/*_small.toml offline
into a temporary directory and checks a claim the paper made, with an interval:

- a comparison of two configurations is a paired difference (robench_plugins.metrics.
  paired: two-level bootstrap over seeds, then samples; with one seed the interval leaves
  training noise out and says so). The test passes when the paper's direction is
  significant, fails when the reverse is, and is skipped as *inconclusive*, with the
  interval in the message, when neither is;
- a single accuracy is compared with the paper's value through its Clopper-Pearson
  interval over the test samples.

A claim whose reverse was measured significant is ``xfail(strict=True)`` with the
numbers; benchmarks/README.md has every measured value and its command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
LEVEL = 0.95
"""Confidence level of every interval asserted here."""

pytestmark = pytest.mark.slow


def run_small(name: str, tmp_path: Path, cache: Path):
    """Run ``benchmarks/<name>.toml`` into ``tmp_path`` and return its run; a file's
    shared ``model_cache`` is redirected under ``cache`` (kept for the whole module, so
    the cifar_*_small files train their four CNNs once)."""
    import dataclasses

    import robench
    from robench.config import load_experiment

    spec = load_experiment(BENCHMARKS / f"{name}.toml")
    if spec.model_cache:
        spec = dataclasses.replace(spec, model_cache=str(cache / Path(spec.model_cache).name))
    run = robench.run(spec, out=tmp_path / name, progress=False)
    assert not run.failures(), run.failures()
    return run


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """``small(name)``: the run of ``benchmarks/<name>.toml``, run once per module."""
    runs, cache = {}, tmp_path_factory.mktemp("model_cache")

    def get(name: str):
        if name not in runs:
            runs[name] = run_small(name, tmp_path_factory.mktemp(name), cache)
        return runs[name]
    return get


def claim(run, better: str, worse: str, *, attack: str, eps: float | None = None,
          what: str) -> None:
    """The paper's claim "``better`` > ``worse``" in robust accuracy at ``eps`` (AUC when
    None) under ``attack``: pass when significant, skip as inconclusive when the
    interval holds 0, fail when the reverse is significant."""
    from robench_plugins.metrics.paired import compare

    result = compare(run.results, better, worse, attack=attack, eps=eps, level=LEVEL)
    text = f"{what}: {better} - {worse} = {result.describe()}"
    if result.direction == 0:
        pytest.skip(f"inconclusive: {text}")
    assert result.direction == 1, f"the reverse is significant: {text}"


def binomial_interval(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion k/n at ``LEVEL``."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(LEVEL, method="exact")
    return ci.low, ci.high


def robust_counts(run, config: str, attack: str) -> dict[float, tuple[int, int]]:
    """``{eps: (robust samples, samples)}`` of one configuration (unconditional)."""
    from robench_plugins.metrics import _tables

    samples = _tables.robust_samples(run.results)
    mine = samples[(samples["attack"] == attack)
                   & (samples["model"] + "/" + samples["defense"] == config)]
    return {float(eps): (int(g["robust"].sum()), len(g))
            for eps, g in mine.groupby("epsilon", sort=True)}


def scalar(metrics, metric: str, **where) -> dict[str, list[float]]:
    """``{defense: [value per seed]}`` of one scalar metric, filtered by ``where``."""
    rows = metrics[metrics["metric"] == metric]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return {d: g.sort_values("seed")["value"].tolist() for d, g in rows.groupby("defense")}


# ----------------------------------------------------------- Tsipras et al. (2019)


def test_tsipras_theorem_2_2(small):
    """Theorem 2.2: the natural SVM has > 99% standard and < 1% robust accuracy at
    eps = 2*eta; the adversarially trained one keeps ~p = 70% robust accuracy for every
    eps < 1 (here up to 0.9), relying on the robust feature x1."""
    run = small("tsipras_tradeoff_small")
    natural = robust_counts(run, "svm/natural", "fgsm")
    adversarial = robust_counts(run, "svm/adversarial", "fgsm")
    assert binomial_interval(*natural[0.0])[0] > 0.99
    assert binomial_interval(*natural[0.25])[1] < 0.01
    for eps, counts in adversarial.items():
        if eps <= 0.9 + 1e-9:
            low, high = binomial_interval(*counts)
            assert low <= 0.7 <= high, (eps, counts)
    share = scalar(run.metrics, "top_k_weight_share")
    assert share["adversarial"][0] > (0.9 - 0.1265) / (1 - 0.1265)


# ---------------------------------------------------------- 5 vs 7 linear (Table 4)


def test_mnist_5v7_adversarial_training_raises_adversarial_accuracy(small):
    """Table 4 (Tsipras et al. 2019): adversarial training raises adversarial accuracy
    at eps 0.2 (14.95% -> 74.65% on MNIST)."""
    run = small("mnist_5v7_linear_small")
    claim(run, "linear/adversarial", "linear/standard", attack="pgd", eps=0.2,
          what="PGD accuracy at eps 0.2")


def test_mnist_5v7_adversarial_training_costs_standard_accuracy(small):
    """Table 4: the robust model pays a (small) cost in standard accuracy."""
    run = small("mnist_5v7_linear_small")
    claim(run, "linear/standard", "linear/adversarial", attack="pgd", eps=0.0,
          what="standard accuracy")


def test_mnist_5v7_adversarial_training_cuts_weight_l1(small):
    """Table 4: ||w||_1 falls (41.08 -> 13.69 on MNIST): lower in every seed."""
    l1 = scalar(small("mnist_5v7_linear_small").metrics, "weight_l1")
    assert all(a < s for a, s in zip(l1["adversarial"], l1["standard"], strict=True))


def test_mnist_5v7_feature_selection_trades_robustness_for_accuracy(small):
    """Fig. 2c: with standard training on the k pixels most correlated with the label
    only, more (weakly correlated) features raise standard accuracy at the cost of
    robustness: k = 200 has the higher clean accuracy, k = 20 the higher PGD accuracy
    at eps 0.2."""
    run = small("mnist_5v7_linear_small")
    claim(run, "linear/selected_k_200", "linear/selected_k_20", attack="pgd", eps=0.0,
          what="standard accuracy")
    claim(run, "linear/selected_k_20", "linear/selected_k_200", attack="pgd", eps=0.2,
          what="PGD accuracy at eps 0.2")


# ------------------------------------------------- Galloway et al. (2018), Fig. 7


def test_mnist_3v7_fgsm_training_resists_fgsm(small):
    """Fig. 7: the FGSM-trained model resists FGSM (eps 0.25) better than the natural one."""
    run = small("mnist_3v7_logreg_small")
    claim(run, "scratch_50k/fgsm", "scratch_50k/natural", attack="fgsm", eps=0.25,
          what="FGSM accuracy at eps 0.25")


def test_mnist_3v7_fgsm_training_falls_to_the_l0_attack(small):
    """Fig. 7: under the black-box L0 attack (positions from the FGSM-trained weights) the
    natural model keeps more accuracy than the FGSM-trained one."""
    run = small("mnist_3v7_logreg_small")
    claim(run, "scratch_50k/natural", "scratch_50k/fgsm", attack="l0_from_fgsm",
          what="L0 AUC")


def test_mnist_3v7_expert_l2_is_robust_to_both(small):
    """Fig. 7: Expert-L2 is reasonably robust to both attacks: above the natural model
    under FGSM and above the FGSM-trained model under the L0 attack."""
    run = small("mnist_3v7_logreg_small")
    claim(run, "expert_10k/l2", "scratch_50k/natural", attack="fgsm", eps=0.25,
          what="FGSM accuracy at eps 0.25")
    claim(run, "expert_10k/l2", "scratch_50k/fgsm", attack="l0_from_fgsm", what="L0 AUC")


def test_mnist_3v7_l1_model_trains(small):
    """With the released code's L1 penalty (lambda * mean|w|) the L1 model trains
    (released code: 96.4% clean)."""
    counts = robust_counts(small("mnist_3v7_logreg_small"), "scratch_50k/l1_3.25", "fgsm")
    assert binomial_interval(*counts[0.0])[0] > 0.9


# ----------------------------------------------------------- Tanay & Griffin (2016)


def test_tilting_small(small):
    """Up to lambda = 1e5 stronger regularisation untilts the boundary (smaller angle,
    larger d_adv) without losing train accuracy; at lambda = 1e7 the SVM underfits."""
    import numpy as np
    from scipy.stats import spearmanr

    m = small("tilting_small").metrics
    angle = {k: v[0] for k, v in scalar(m, "tilting_angle").items()}
    d_adv = {k: v[0] for k, v in scalar(m, "d_adv").items()}
    lams = sorted(angle, key=lambda label: float(label.split("1e")[1]))
    fit = [k for k in lams if float(k.split("1e")[1]) <= 5]
    assert spearmanr(np.arange(len(fit)), [angle[k] for k in fit]).statistic < -0.9
    assert spearmanr(np.arange(len(fit)), [d_adv[k] for k in fit]).statistic > 0.9
    train = {k: v[0] for k, v in scalar(m, "train_accuracy", condition="clean").items()}
    assert train[lams[0]] >= max(train.values()) - 0.005
    assert train[lams[-1]] < train[lams[0]] - 0.3


def test_tilting_lenet_high_decay_is_less_overfitted(small):
    """LeNet-high has the lower test error (1.2% vs 1.6%)."""
    claim(small("tilting_lenet_small"), "lenet/high", "lenet/low", attack="high_confidence",
          eps=0.0, what="clean accuracy")


def distance_claim(run, larger: str, smaller: str, *, attack: str, what: str) -> None:
    """The paper's claim "``larger`` needs larger perturbations than ``smaller``": the
    paired difference of per-sample minimal distances under ``attack``, on the samples
    where both found one; pass, skip or fail as :func:`claim` does."""
    import numpy as np

    from robench_plugins.metrics._tables import minimal_distances
    from robench_plugins.metrics.paired import paired_difference

    found = minimal_distances(run.results)
    found = found[found["attack"] == attack]
    found = found.assign(config=found["model"] + "/" + found["defense"])
    wide = found.pivot_table(index=["seed", "sample"], columns="config", values="distance")
    wide = wide.loc[np.isfinite(wide[[larger, smaller]]).all(axis=1), [larger, smaller]]
    per_seed = [g.to_numpy() for _, g in wide.groupby(level="seed", sort=True)]
    n = min(len(g) for g in per_seed)
    stacked = np.stack([g[:n] for g in per_seed])
    result = paired_difference(stacked[..., 0], stacked[..., 1], level=LEVEL)
    text = f"{what}: {larger} - {smaller} = {result.describe()}"
    if result.direction == 0:
        pytest.skip(f"inconclusive: {text}")
    assert result.direction == 1, f"the reverse is significant: {text}"


def test_tilting_lenet_high_decay_needs_larger_perturbations(small):
    """LeNet-high has a (much) lower weight RMS and its high-confidence targeted
    perturbations (footnote 10: calibrated temperature, p_target driven to 0.95, cyclic
    targets) have higher L2 norms. The paper gives no RMS values or norms, so only the
    directions are asserted (one seed)."""
    run = small("tilting_lenet_small")
    rms = scalar(run.metrics, "weight_rms")
    assert rms["high"][0] < rms["low"][0]
    distance_claim(run, "lenet/high", "lenet/low", attack="high_confidence",
                   what="L2 norm of the high-confidence perturbation")


# ------------------------------------------ Galloway et al. (2018), CIFAR-10 claims


def test_cifar_linf_cnn_l2_above_cnn_at_small_eps(small):
    """Section 6.4: CNN-L2 is 3-6 points above CNN (both PGD-trained) for eps < 16/255."""
    claim(small("cifar_linf_small"), "cnn/pgd_l2", "cnn/pgd", attack="pgd", eps=8 / 255,
          what="PGD accuracy at 8/255")


def test_cifar_l0_cnn_l2_above_cnn_under_pixel_swap(small):
    """Fig. 11: under random pixel swap CNN-L2 keeps more accuracy than CNN."""
    claim(small("cifar_l0_small"), "cnn/pgd_l2", "cnn/pgd", attack="pixel_swap",
          what="pixel-swap AUC")


def test_cifar_jsma_small(small):
    """Table 2: the targeted JSMA's success grows with the budget gamma."""
    m = small("cifar_jsma_small").metrics
    rows = m[(m["metric"] == "success_rate") & (m["attack"] == "jsma")]
    for _, curve in rows.groupby("defense"):
        values = curve.sort_values("epsilon")["value"].to_numpy()
        assert (values[1:] >= values[:-1]).all() and values[-1] > values[0]


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "not reproduced on the small variant (Fashion-MNIST, Table-1 CNN): fooling success "
    "of every model rises monotonically to ~1.0 by eps 64/255 and stays there (pgd_l2: "
    "0.260 at 8/255, 0.893 at 32/255, 1.000 at 64/255, 2,000 attempts each); the same "
    "attack on the authors' released CNN-L2 weights peaks and decays, so the cause is "
    "the small variant's model; see benchmarks/README.md"))
def test_cifar_fooling_small(small):
    """Fig. 9: the CNN-L2's fooling success peaks at a small eps (around 20/255) and then
    clearly decays (by more than 0.1 at the end of the sweep)."""
    m = small("cifar_fooling_small").metrics
    rows = m[(m["metric"] == "fooling_success") & (m["attack"] == "fooling_fig9")
             & (m["defense"] == "pgd_l2")].sort_values("epsilon")
    peak = rows["value"].idxmax()
    assert 0 < rows.at[peak, "epsilon"] <= 48 / 255
    assert rows["value"].iloc[-1] < rows.at[peak, "value"] - 0.1


def test_fashion_defenses_small(small):
    """PGD training is more robust under Linf PGD (AUC) than no defense, and the report
    ranks it first."""
    run = small("fashion_defenses_small")
    report = (run.path / "report.md").read_text()
    assert "most robust first: **pgd** >" in report
    claim(run, "lenet/pgd", "lenet/none", attack="pgd", what="PGD AUC")


# ---------------------------------------------------------------- Wen et al. (2020)


def per_sample_losses(run, name: str, defenses: tuple[str, ...]):
    """``{defense: (train losses, test losses)}``: the cross-entropy of every training
    and test input of the run's trained models of ``benchmarks/<name>.toml`` (eval
    mode, the data subsets of the run)."""
    import torch.nn.functional as F

    from robench.config import load_experiment
    from robench.evaluation import logits
    from robench.runner import Runner

    runner = Runner(load_experiment(BENCHMARKS / f"{name}.toml"), run.path, device="cpu",
                    progress=False)
    worker = runner.worker("cpu")
    data = worker.data()
    losses = {}
    for cell in runner.cells:
        if cell.defense.label in defenses:
            model = worker.model(cell)[0].eval()
            losses[cell.defense.label] = tuple(
                F.cross_entropy(logits(model, x, 512, "cpu"), y, reduction="none").numpy()
                for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)))
    return losses


def loss_gap_difference(losses, a: str, b: str) -> tuple[float, float, float]:
    """Loss gap (mean test minus mean training loss) of ``a`` minus that of ``b``, with
    a percentile bootstrap interval at ``LEVEL`` (scipy): the training and the test
    inputs are resampled independently, each draw shared by both models (paired)."""
    import numpy as np
    from scipy.stats import bootstrap

    (train_a, test_a), (train_b, test_b) = losses[a], losses[b]
    test, train = test_a - test_b, train_a - train_b
    result = bootstrap((test, train), lambda t, r, axis=-1: t.mean(axis) - r.mean(axis),
                       confidence_level=LEVEL, n_resamples=2000, method="percentile",
                       rng=np.random.default_rng(0))
    interval = result.confidence_interval
    return float(test.mean() - train.mean()), float(interval.low), float(interval.high)


def test_ge_gap_spectral_small(small):
    """Table 6 / Fig. 3a: the GE gap of loss shrinks as the AR strength grows (ResNet-56,
    CIFAR-10: 0.669 / 0.606 / 0.545 at AR 4 / 8 / 16). Asserted: AR4's gap above AR16's,
    and neither step AR4 -> AR8 -> AR16 significantly reversed; paired bootstrap over the
    training and test inputs (one seed: training noise not included)."""
    run = small("ge_gap_spectral_small")
    losses = per_sample_losses(run, "ge_gap_spectral_small", ("at4", "at8", "at16"))
    gap = {k: v[0] for k, v in scalar(run.metrics, "loss_gap", condition="clean").items()}
    for defense, (train, test) in losses.items():   # the models the metric measured
        assert test.mean() - train.mean() == pytest.approx(gap[defense], abs=1e-3)
    pairs = {(weak, strong): loss_gap_difference(losses, weak, strong)
             for weak, strong in (("at4", "at16"), ("at4", "at8"), ("at8", "at16"))}
    text = "; ".join(f"gap {w} - gap {s} = {d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                     for (w, s), (d, lo, hi) in pairs.items())
    text += f" ({LEVEL:.0%} paired bootstrap over inputs; one seed: training noise not included)"
    assert not any(hi < 0 for _, _, hi in pairs.values()), f"the reverse is significant: {text}"
    if not pairs["at4", "at16"][1] > 0:
        pytest.skip(f"inconclusive: {text}")


def test_ge_gap_spectral_small_spectrum(small):
    """Fig. 1a / appendix B.2: the std of each layer's singular values is lower at AR16
    than at AR4 in most layers, the summed decreases far above the summed increases.
    Asserted: the mean per-layer change at16 - at4 is below 0, with a Student-t interval
    over the layers (one seed: training noise not included)."""
    from robench_plugins.metrics._tables import t_interval

    m = small("ge_gap_spectral_small").metrics
    mine = m[(m["defense"] == "at16") & (m["baseline"] == "at4")]
    changes = mine.loc[mine["metric"] == "spectrum_change", "value"].to_numpy()
    summary = {k: v[0] for k, v in scalar(mine, "spectrum_decrease_sum").items()}
    increases = {k: v[0] for k, v in scalar(mine, "spectrum_increase_sum").items()}
    mean, half = t_interval(changes, LEVEL)
    text = (f"{(changes < 0).sum()} of {len(changes)} layers decrease, by "
            f"{summary['at16']:.3f} in all, increases {increases['at16']:.3f}; mean "
            f"change {mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}] ({LEVEL:.0%} "
            f"t-interval over layers; one seed: training noise not included)")
    assert not mean - half > 0, f"the reverse is significant: {text}"
    if not mean + half < 0:
        pytest.skip(f"inconclusive: {text}")
