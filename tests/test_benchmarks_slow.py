"""Runs of the small benchmark variants and the orderings they must show (docs/protocols.md).

Marked slow (each run takes minutes on a 2-core CPU): ``pytest -m slow
tests/test_benchmarks_slow.py``. Every test runs one benchmarks/*_small.toml offline
into a temporary directory and checks the paper's *ordering* on the stored metrics, not
the paper's numbers (see benchmarks/README.md for the measured values).
"""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

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


def scalar(metrics, metric: str, **where) -> dict[str, float]:
    """``{defense: value}`` of one scalar metric, filtered by ``where`` columns."""
    rows = metrics[metrics["metric"] == metric]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    assert rows["defense"].is_unique, rows
    return dict(zip(rows["defense"], rows["value"]))


def accuracy_at(metrics, attack: str, eps: float, model: str | None = None) -> dict[str, float]:
    """Unconditional robust accuracy per defense at the grid budget nearest ``eps``."""
    rows = metrics[(metrics["metric"] == "robust_accuracy") & (metrics["attack"] == attack)
                   & (metrics["convention"] == "unconditional")]
    if model is not None:
        rows = rows[rows["model"] == model]
    nearest = rows["epsilon"].iloc[(rows["epsilon"] - eps).abs().argmin()]
    rows = rows[rows["epsilon"] == nearest]
    return dict(zip(rows["defense"], rows["value"]))


def auc(metrics, attack: str, model: str | None = None) -> dict[str, float]:
    """Unconditional AUC per defense under ``attack``."""
    rows = metrics[(metrics["metric"] == "auc") & (metrics["attack"] == attack)
                   & (metrics["convention"] == "unconditional")]
    if model is not None:
        rows = rows[rows["model"] == model]
    return dict(zip(rows["defense"], rows["value"]))


def test_tsipras_tradeoff_small(small):
    """Theorem 2.2 (Tsipras et al. 2019): natural SVM > 99% standard, < 1% robust at eps = 2*eta;
    adversarial training ~70% / ~70% with more weight on the robust feature."""
    m = small("tsipras_tradeoff_small").metrics
    clean = scalar(m, "clean_accuracy")
    robust = accuracy_at(m, "fgsm", 0.25)
    assert clean["natural"] > 0.99 and robust["natural"] < 0.01
    assert 0.65 < clean["adversarial"] < 0.75 and 0.65 < robust["adversarial"] < 0.75
    share = scalar(m, "top_k_weight_share")
    assert share["adversarial"] > 10 * share["natural"]


def test_mnist_5v7_linear_small(small):
    """Table 4 (Tsipras et al. 2019): adversarial training cuts ||w||_1 and raises adversarial
    accuracy at eps 0.2 several-fold, at a cost in standard accuracy."""
    m = small("mnist_5v7_linear_small").metrics
    l1 = scalar(m, "weight_l1")
    assert l1["adversarial"] < l1["standard"] / 5
    robust = accuracy_at(m, "pgd", 0.2)
    assert robust["adversarial"] > 5 * robust["standard"]
    clean = scalar(m, "clean_accuracy")
    assert clean["standard"] - 0.2 < clean["adversarial"] < clean["standard"]


def test_tilting_small(small):
    """Tanay & Griffin (2016): up to lambda = 1e5, stronger regularisation untilts the boundary
    (smaller angle, larger d_adv) without losing train accuracy; at lambda = 1e7 the SVM
    underfits. (Between 1e6 and 1e7 ||w|| is ~1e-3, Adam's step size, and the angle
    rises again: an optimiser artefact recorded in benchmarks/README.md.)"""
    import numpy as np
    from scipy.stats import spearmanr

    m = small("tilting_small").metrics
    angle, d_adv = scalar(m, "tilting_angle"), scalar(m, "d_adv")
    lams = sorted(angle, key=lambda label: float(label.split("1e")[1]))
    fit = [k for k in lams if float(k.split("1e")[1]) <= 5]
    assert spearmanr(np.arange(len(fit)), [angle[k] for k in fit]).statistic < -0.9
    assert spearmanr(np.arange(len(fit)), [d_adv[k] for k in fit]).statistic > 0.9
    train = scalar(m, "train_accuracy", condition="clean")
    assert train[lams[0]] >= max(train.values()) - 0.005
    assert train[lams[-1]] < train[lams[0]] - 0.3


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "not reproduced on the small variant: with weight decay 1e-1 the LeNet does not train "
    "in 10 epochs of 3,000 Fashion-MNIST images (clean accuracy 11.7% vs 77.7% for 1e-4), "
    "so its larger targeted-L2 distances mean nothing; see benchmarks/README.md"))
def test_tilting_lenet_small(small):
    """Tanay & Griffin (2016): LeNet-high trains (test error close to LeNet-low's), has a much lower
    weight RMS and needs larger targeted L2 perturbations than LeNet-low."""
    m = small("tilting_lenet_small").metrics
    clean = scalar(m, "clean_accuracy")
    assert clean["high"] > clean["low"] - 0.05
    rms = scalar(m, "weight_rms")
    assert rms["high"] < rms["low"] / 2
    distance = scalar(m, "median_distance", convention="unconditional")
    assert distance["high"] > distance["low"]


def test_fashion_defenses_small(small):
    """none / L2 / L1 / PGD on Fashion-MNIST; PGD training is the most robust
    under Linf PGD (largest AUC) and the report ranks it first."""
    run = small("fashion_defenses_small")
    area = auc(run.metrics, "pgd")
    assert max(area, key=area.get) == "pgd"
    assert area["pgd"] > area["none"] + 0.1
    report = (run.path / "report.md").read_text()
    assert "most robust first: **pgd** >" in report


def test_mnist_3v7_logreg_small(small):
    """Fig. 7 (Galloway et al. 2018): FGSM training wins under FGSM and loses under the black-box L0
    attack built from its own weights; the natural model is the reverse."""
    m = small("mnist_3v7_logreg_small").metrics
    fgsm = accuracy_at(m, "fgsm", 0.25, model="scratch_50k")
    assert fgsm["fgsm"] > fgsm["natural"] + 0.2
    l0 = auc(m, "l0_from_fgsm", model="scratch_50k")
    assert l0["fgsm"] < l0["natural"]


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "not reproduced on the small variant (Fashion-MNIST, Table-1 CNN, 8 epochs): the L2 "
    "CNN's AUC under pixel swap is below the natural one's in every run (0.465-0.500 vs "
    "0.565-0.620, depending on the thread count); see benchmarks/README.md"))
def test_cifar_l0_small(small):
    """Galloway et al. section 6.4: L2 weight decay slows the decay under random pixel swap."""
    m = small("cifar_l0_small").metrics
    area = auc(m, "pixel_swap")
    assert area["l2"] > area["natural"]
    assert area["pgd_l2"] > area["pgd"]


def test_cifar_linf_small(small):
    """Galloway et al. Fig. 10: the PGD-trained CNNs keep more accuracy under PGD at small
    eps than the natural one."""
    m = small("cifar_linf_small").metrics
    robust = accuracy_at(m, "pgd", 8 / 255)
    assert min(robust["pgd"], robust["pgd_l2"]) > robust["natural"]


def test_cifar_jsma_small(small):
    """Table 2 (Galloway et al. 2018): the targeted JSMA's success grows with the budget gamma."""
    m = small("cifar_jsma_small").metrics
    rows = m[(m["metric"] == "success_rate") & (m["attack"] == "jsma")]
    for _, curve in rows.groupby("defense"):
        values = curve.sort_values("epsilon")["value"].to_numpy()
        assert (values[1:] >= values[:-1]).all() and values[-1] > values[0]


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "not reproduced on the small variant (Fashion-MNIST, Table-1 CNN): fooling success "
    "of every model rises monotonically to ~1.0 by eps 64/255 and stays there (pgd_l2: "
    "~0.35 at 8/255, ~0.8 at 32/255, ~0.99 at 64/255); see benchmarks/README.md"))
def test_cifar_fooling_small(small):
    """Fig. 9 (Galloway et al. 2018): the CNN-L2's fooling success peaks at a small eps (around
    20/255) and then clearly decays (by more than 0.1 at the end of the sweep)."""
    m = small("cifar_fooling_small").metrics
    rows = m[(m["metric"] == "fooling_success") & (m["attack"] == "fooling_fig9")
             & (m["defense"] == "pgd_l2")].sort_values("epsilon")
    peak = rows["value"].idxmax()
    assert 0 < rows.at[peak, "epsilon"] <= 48 / 255
    assert rows["value"].iloc[-1] < rows.at[peak, "value"] - 0.1


def test_ge_gap_spectral_small(small):
    """Wen et al. (2020): adversarial training shrinks the GE gap of loss (monotone in eps) and
    the average maximal loss variation."""
    m = small("ge_gap_spectral_small").metrics
    gap = scalar(m, "loss_gap", condition="clean")
    assert gap["natural"] > gap["at8"] > gap["at16"]
    variation = scalar(m, "loss_variation_mean")
    assert variation["natural"] > variation["at8"] > variation["at16"]


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "not reproduced on the small variant (Fashion-MNIST, Table-1 CNN, 10 epochs on 1,000 "
    "images): mean over layers of the singular values' std natural 0.562, at8 0.582, "
    "at16 0.614; see benchmarks/README.md"))
def test_ge_gap_spectral_small_flattens_spectrum(small):
    """Wen et al. (2020): adversarial training flattens the singular-value spectrum (lower std)."""
    m = small("ge_gap_spectral_small").metrics
    sv = m[m["metric"] == "sv_std"].groupby("defense")["value"].mean()
    assert sv["at8"] < sv["natural"] and sv["at16"] < sv["natural"]
