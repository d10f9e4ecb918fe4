"""Readers for the original on-disk formats and the shared post-processing of datasets.

Private implementation module: imported only inside ``load`` methods (it imports numpy
and torch at module level).

- :func:`read_idx` reads the IDX format of MNIST / Fashion-MNIST (LeCun's
  ``*-idx3-ubyte`` files), gzip-compressed or not. torchvision's
  ``read_sn3_pascalvincent_tensor`` opens files uncompressed only, so the gzip files of
  the Debian package ``dataset-fashion-mnist`` need this reader.
- :func:`read_foolbox_cifar10` reads the 20 CIFAR-10 test images bundled with foolbox.
- :func:`read_cifar10` reads the CIFAR-10 "python version" pickle batches.
  torchvision's ``CIFAR10`` class verifies each batch's md5 sum, so it cannot read any
  other copy of the format; robench uses torchvision only to download, then reads the
  batches itself, with an unpickler that builds nothing but arrays, lists and dicts (a
  crafted file in the data folder cannot run code).
- :func:`finish` applies class selection, label mapping and the validation split.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from robench import DataInfo, LoadedData

# IDX type codes (third byte of the magic number) -> numpy big-endian dtypes
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

DEFAULT_ROOT = "~/.cache/robench/data"
"""Data directory used when the experiment file gives no ``[data] root``."""


def data_root(root: str | None) -> Path:
    """The data directory: the experiment's ``root``, else ``$ROBENCH_DATA``, else
    :data:`DEFAULT_ROOT` (user directory expanded)."""
    return Path(os.path.expanduser(root or os.environ.get("ROBENCH_DATA") or DEFAULT_ROOT))


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into a numpy array of its stored shape.

    Format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number
    of dimensions, one big-endian uint32 per dimension, then the values, big-endian.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    count = int(np.prod(shape))
    offset = 4 + 4 * ndim
    if len(data) - offset < count * dtype.itemsize:
        raise ValueError(f"{path}: truncated IDX file ({len(data) - offset} bytes of values, "
                         f"shape {shape} needs {count * dtype.itemsize})")
    values = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(directory: Path, stem: str) -> Path:
    """``directory/stem`` or ``directory/stem.gz``, whichever exists."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no {stem} or {stem}.gz in {directory}")


def read_idx_split(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) of one split (``prefix`` = "train" or
    "t10k") from the four standard MNIST-style file names."""
    images = read_idx(find_idx(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find_idx(directory, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{directory}: {prefix} images {images.shape} and labels "
                         f"{labels.shape} do not match")
    return images, labels


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch, admitting only the globals its format needs: numpy's
    array reconstruction (numpy 1 and 2 module paths), ``ndarray`` and ``dtype``.
    Dicts, lists, strings, bytes and numbers need no global; anything else is refused."""

    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"),
                         ("numpy._core.multiarray", "_reconstruct"),
                         ("numpy", "ndarray"), ("numpy", "dtype")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 "
                                         f"batch holds only arrays, lists and dicts")
        return super().find_class(module, name)


def load_cifar_batch(path: Path) -> dict:
    """One CIFAR batch file as a dict with str keys, through the restricted unpickler
    (``encoding="bytes"``, as the batches were written by Python 2). A file that is not
    a batch raises ValueError naming it."""
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a CIFAR-10 batch ({err})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: not a CIFAR-10 batch (a {type(entry).__name__}, "
                         f"not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_cifar10(directory: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) from CIFAR-10 python batches.

    Each batch is a pickled dict with ``data`` (N x 3072 uint8, channel-major: 1024 red,
    1024 green, 1024 blue values, rows of 32) and ``labels`` (N ints).
    """
    xs, ys = [], []
    for name in names:
        entry = load_cifar_batch(directory / name)
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


FOOLBOX_CIFAR10_SAMPLES = 20
"""foolbox ships the first 20 CIFAR-10 test images as ``data/cifar10_II_LABEL.png``."""


def read_foolbox_cifar10() -> tuple[np.ndarray, np.ndarray]:
    """foolbox's bundled CIFAR-10 test images (N, 3, 32, 32) uint8 and labels (N,), in
    the order of their index ``II`` (the images and labels ``foolbox.utils.samples``
    returns for ``dataset="cifar10"``), read from the installed package's data folder."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError('source = "foolbox" needs the foolbox package '
                                "(pip install foolbox)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    files = sorted(folder.glob("cifar10_[0-9][0-9]_*.png"))
    if len(files) != FOOLBOX_CIFAR10_SAMPLES:
        raise FileNotFoundError(f"expected foolbox's {FOOLBOX_CIFAR10_SAMPLES} CIFAR-10 "
                                f"samples in {folder}, found {len(files)}")
    images = [np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8) for f in files]
    labels = [int(f.stem.rsplit("_", 1)[1]) for f in files]
    return np.stack(images).transpose(0, 3, 1, 2), np.asarray(labels, dtype=np.int64)


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images -> float32 in [0, 1], NCHW (a channel axis is added to N x H x W);
    labels -> int64."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x, torch.from_numpy(np.asarray(labels, dtype=np.int64))


def select_classes(x: torch.Tensor, y: torch.Tensor, classes: tuple[int, ...],
                   labels: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the samples whose label is in ``classes`` (original order kept) and relabel
    ``classes[i] -> labels[i]``; empty ``classes`` keeps everything unchanged."""
    if not classes:
        return x, y
    mapping = torch.full((max(y.tolist() + list(classes)) + 1,), -1, dtype=torch.long)
    for cls, new in zip(classes, labels):
        mapping[cls] = new
    new_y = mapping[y]
    keep = new_y >= 0
    return x[keep], new_y[keep]


def finish(info: DataInfo, train: tuple[torch.Tensor, torch.Tensor],
           test: tuple[torch.Tensor, torch.Tensor], options) -> LoadedData:
    """Apply ``options.classes``/``labels`` and ``options.validation`` (see the image
    datasets' options) and return the :class:`LoadedData` with an updated ``info``."""
    import dataclasses

    classes = tuple(options.classes)
    labels = tuple(options.labels) or tuple(range(len(classes)))
    x_tr, y_tr = select_classes(*train, classes, labels)
    x_te, y_te = select_classes(*test, classes, labels)
    if classes:
        names = []
        for new in range(max(labels) + 1):
            olds = [c for c, lab in zip(classes, labels) if lab == new]
            names.append("+".join(info.class_names[c] if info.class_names else str(c)
                                  for c in olds))
        info = dataclasses.replace(info, num_classes=max(labels) + 1, class_names=tuple(names))
    if options.validation:
        n = options.validation
        if n >= len(x_tr):
            raise ValueError(f"validation = {n} leaves no training data "
                             f"({len(x_tr)} training samples)")
        x_tr, y_tr, x_te, y_te = x_tr[:-n], y_tr[:-n], x_tr[-n:], y_tr[-n:]
        info = dataclasses.replace(info, source=info.source + f"; test split = last {n} "
                                   "training samples (validation)")
    return LoadedData(info, x_tr, y_tr, x_te, y_te)
