"""The CIFAR-10 reader unpickles batches with a restricted unpickler: real batches load,
a crafted file that would run code is refused."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest

from robench_plugins.datasets._io import load_cifar_batch, read_cifar10


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes, as the published batches hold them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _write_batch(path, images, labels):
    entry = {b"batch_label": b"training batch 1 of 5", b"labels": labels,
             b"data": images.reshape(len(images), -1),
             b"filenames": [f"{i}.png".encode() for i in range(len(images))]}
    with open(path, "wb") as f:
        _Python2Pickler(f, protocol=2).dump(entry)


def test_a_batch_in_the_published_format_loads(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    _write_batch(tmp_path / "data_batch_1", images, [4, 0, 9])
    x, y = read_cifar10(tmp_path, ("data_batch_1",))
    assert np.array_equal(x, images) and y.tolist() == [4, 0, 9]
    assert y.dtype == np.int64


def test_a_batch_written_by_python3_numpy_loads(tmp_path):
    images = np.arange(2 * 3072, dtype=np.uint16).astype(np.uint8).reshape(2, 3, 32, 32)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({"data": images.reshape(2, -1), "labels": [1, 2]}, f, protocol=4)
    x, y = read_cifar10(tmp_path, ("test_batch",))
    assert np.array_equal(x, images) and y.tolist() == [1, 2]


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_crafted_batch_that_calls_os_system_is_refused(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump({b"data": _RunsCode(marker), b"labels": [0]}, f, protocol=protocol)
    with pytest.raises(ValueError, match=r"data_batch_1: not a CIFAR-10 batch \(refusing to "
                                         r"load \w+\.\w+"):
        load_cifar_batch(path)
    with open(path, "wb") as f:
        pickle.dump(_RunsCode(marker), f, protocol=protocol)
    with pytest.raises(ValueError, match=rf"refusing to load {os.system.__module__}\.system"):
        load_cifar_batch(path)
    assert not marker.exists()


def test_a_file_that_is_not_a_batch_is_named(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_1: not a CIFAR-10 batch"):
        read_cifar10(tmp_path, ("data_batch_1",))
    with open(tmp_path / "list_batch", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ValueError, match="a list, not a dict"):
        load_cifar_batch(tmp_path / "list_batch")
