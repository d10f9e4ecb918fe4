"""The layer-by-layer spectrum comparison of two configurations (Wen, Li & Jia (2020),
Fig. 1a and appendix B.2) against hand computations, and the singular values it compares
against a dense SVD of operators built element by element with numpy."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
from torch import nn

from robench_plugins.metrics.spectrum import SpectrumChange
from robench_plugins.operators import conv_singular_values, layer_singular_values

torch.set_num_threads(1)


def sv_rows(defense, values, *, seed=0, statistic="sv_std", method="dense"):
    """``singular_values``-style rows of one cell: one ``statistic`` row per layer."""
    return pd.DataFrame([dict(dataset="toy", model="cnn", defense=defense, seed=seed,
                              cell=f"cnn--{defense}--s{seed}", layer=name, layer_index=i,
                              kind="conv", method=method, note="", metric=statistic,
                              value=value)
                         for i, (name, value) in enumerate(values.items())])


def value(out, metric, defense, seed=0, **where):
    rows = out[(out["metric"] == metric) & (out["defense"] == defense) & (out["seed"] == seed)]
    for column, wanted in where.items():
        rows = rows[rows[column] == wanted]
    assert len(rows) == 1, rows
    return rows["value"].iat[0]


def change(baseline="at4", statistic="sv_std"):
    return SpectrumChange(SpectrumChange.Options(baseline=baseline, statistic=statistic))


def test_counts_and_sums_of_decreases_and_increases_by_hand():
    # at4 -> at16: conv1 1.0 -> 0.7 (-0.3), conv2 0.8 -> 0.9 (+0.1), fc 0.5 -> 0.2 (-0.3)
    metrics = pd.concat([
        sv_rows("at4", {"conv1": 1.0, "conv2": 0.8, "fc": 0.5}),
        sv_rows("at16", {"conv1": 0.7, "conv2": 0.9, "fc": 0.2}),
        sv_rows("natural", {"conv1": 1.0, "conv2": 0.8, "fc": 0.5}),
        # another seed: pairs only with the baseline of its own seed
        sv_rows("at4", {"conv1": 2.0, "conv2": 2.0, "fc": 2.0}, seed=1),
        sv_rows("at16", {"conv1": 2.5, "conv2": 2.0, "fc": 1.0}, seed=1),
        sv_rows("at16", {"conv1": 9.0}, statistic="sv_max"),  # another statistic: ignored
    ], ignore_index=True)
    out = change().from_metrics(metrics)
    assert value(out, "spectrum_change", "at16", layer="conv1") == pytest.approx(-0.3)
    assert value(out, "spectrum_change", "at16", layer="conv2") == pytest.approx(0.1)
    assert value(out, "spectrum_decrease_count", "at16") == 2
    assert value(out, "spectrum_decrease_sum", "at16") == pytest.approx(0.6)
    assert value(out, "spectrum_decrease_mean", "at16") == pytest.approx(0.3)
    assert value(out, "spectrum_increase_count", "at16") == 1
    assert value(out, "spectrum_increase_sum", "at16") == pytest.approx(0.1)
    assert value(out, "spectrum_increase_mean", "at16") == pytest.approx(0.1)
    assert value(out, "spectrum_net_decrease", "at16") == pytest.approx(0.5)
    assert value(out, "spectrum_layers", "at16") == 3
    # seed 1: +0.5, 0, -1.0; an unchanged layer counts in neither group
    assert value(out, "spectrum_decrease_count", "at16", seed=1) == 1
    assert value(out, "spectrum_decrease_sum", "at16", seed=1) == pytest.approx(1.0)
    assert value(out, "spectrum_increase_sum", "at16", seed=1) == pytest.approx(0.5)
    assert value(out, "spectrum_layers", "at16", seed=1) == 3
    # identical spectra: no change, empty groups have no mean
    assert value(out, "spectrum_decrease_count", "natural") == 0
    assert math.isnan(value(out, "spectrum_decrease_mean", "natural"))
    assert set(out["defense"]) == {"at16", "natural"}          # the baseline is not compared
    assert set(out["baseline"]) == {"at4"} and set(out["statistic"]) == {"sv_std"}
    layers = out[(out["metric"] == "spectrum_change") & (out["defense"] == "at16")
                 & (out["seed"] == 0)]
    assert list(layers["layer"]) == ["conv1", "conv2", "fc"]   # in forward order
    assert set(layers["method"]) == set(layers["method_baseline"]) == {"dense"}


def test_the_statistic_option_picks_the_rows():
    metrics = pd.concat([sv_rows("at4", {"c": 3.0}, statistic="sv_max"),
                         sv_rows("at16", {"c": 2.0}, statistic="sv_max"),
                         sv_rows("at16", {"c": 7.0})], ignore_index=True)
    out = change(statistic="sv_max").from_metrics(metrics)
    assert value(out, "spectrum_change", "at16") == pytest.approx(-1.0)


def test_the_paper_sums_reproduce_from_their_groups():
    """Appendix B.2's CIFAR-10 numbers are sums and means of the same groups: 4.7465 at
    a mean of 0.1158 is 41 layers, 0.4372 at 0.0312 is 14; 55 layers compared."""
    decreases = np.full(41, 4.7465 / 41)
    increases = np.full(14, 0.4372 / 14)
    at4 = {f"l{i}": 1.0 for i in range(55)}
    at16 = {f"l{i}": 1.0 - d for i, d in enumerate(decreases)}
    at16.update({f"l{41 + i}": 1.0 + d for i, d in enumerate(increases)})
    out = change().from_metrics(pd.concat([sv_rows("at4", at4), sv_rows("at16", at16)]))
    assert value(out, "spectrum_decrease_sum", "at16") == pytest.approx(4.7465)
    assert value(out, "spectrum_decrease_mean", "at16") == pytest.approx(0.1158, abs=5e-5)
    assert value(out, "spectrum_increase_mean", "at16") == pytest.approx(0.0312, abs=5e-5)
    assert value(out, "spectrum_decrease_count", "at16") == 41


def test_error_paths():
    metrics = pd.concat([sv_rows("at4", {"c": 1.0}), sv_rows("at16", {"c": 1.0})])
    with pytest.raises(ValueError, match="baseline"):
        SpectrumChange(SpectrumChange.Options()).from_metrics(metrics)
    with pytest.raises(ValueError, match="'at8'.*at16"):
        change(baseline="at8").from_metrics(metrics)
    with pytest.raises(ValueError, match="singular_values"):
        change().from_metrics(metrics[metrics["metric"] == "nothing"])
    with pytest.raises(ValueError, match="statistic"):
        SpectrumChange.Options(baseline="at4", statistic="sv_median")


def test_runs_after_singular_values_in_the_metric_pipeline():
    from robench.metric_pipeline import compute

    cells = pd.concat([sv_rows("at4", {"c": 1.0}), sv_rows("at16", {"c": 0.25})])
    out, errors = compute([change()], pd.DataFrame(), cells)
    assert not errors
    row = out[out["metric"] == "spectrum_decrease_sum"]
    assert row["value"].iat[0] == pytest.approx(0.75)
    assert row["higher_is_better"].isna().all()


def test_registered(registry):
    assert registry.get("metric", "spectrum_change") is SpectrumChange


# ------------------------------------- singular values against a numpy dense SVD


def circular_strided_matrix(weight: np.ndarray, n: int, stride: int, pad: int) -> np.ndarray:
    """The matrix of a 2-d cross-correlation with ``weight`` (out, in, k, k) on a
    circular ``n x n`` input, output ``(i, j)`` reading input ``(s*i + a - pad, s*j + b
    - pad) mod n`` through tap ``(a, b)``, built entry by entry."""
    out_ch, in_ch, k, _ = weight.shape
    m = n // stride
    matrix = np.zeros((out_ch * m * m, in_ch * n * n))
    for o in range(out_ch):
        for i in range(m):
            for j in range(m):
                row = (o * m + i) * m + j
                for c in range(in_ch):
                    for a in range(k):
                        for b in range(k):
                            r, q = (stride * i + a - pad) % n, (stride * j + b - pad) % n
                            matrix[row, (c * n + r) * n + q] += weight[o, c, a, b]
    return matrix


def zero_padded_strided_matrix(weight: np.ndarray, n: int, stride: int, pad: int
                               ) -> np.ndarray:
    """The same with zero padding: taps falling outside the input read nothing."""
    out_ch, in_ch, k, _ = weight.shape
    m = (n + 2 * pad - k) // stride + 1
    matrix = np.zeros((out_ch * m * m, in_ch * n * n))
    for o in range(out_ch):
        for i in range(m):
            for j in range(m):
                row = (o * m + i) * m + j
                for c in range(in_ch):
                    for a in range(k):
                        for b in range(k):
                            r, q = stride * i + a - pad, stride * j + b - pad
                            if 0 <= r < n and 0 <= q < n:
                                matrix[row, (c * n + r) * n + q] += weight[o, c, a, b]
    return matrix


@pytest.mark.parametrize("k,stride,pad,n", [(3, 2, 1, 6), (4, 2, 1, 8), (5, 3, 2, 6)])
def test_polyphase_fft_equals_numpy_svd_of_a_strided_circular_convolution(k, stride, pad, n):
    rng = np.random.default_rng(k)
    weight = rng.standard_normal((3, 2, k, k))
    expected = scipy.linalg.svdvals(circular_strided_matrix(weight, n, stride, pad))
    got = conv_singular_values(torch.from_numpy(weight), (n, n), stride=(stride,))
    np.testing.assert_allclose(np.sort(got.numpy())[::-1], expected, rtol=1e-9, atol=1e-9)
    # the layer-level routine (the metric's and the defense's) on the same layer
    layer = nn.Conv2d(2, 3, k, stride=stride, padding=pad, padding_mode="circular",
                      bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
    values, method, note = layer_singular_values(layer, (2, n, n), dense_limit=0)
    assert method == "polyphase fft" and note == ""
    np.testing.assert_allclose(values, expected, rtol=1e-9, atol=1e-9)


def test_dense_method_equals_numpy_svd_of_a_zero_padded_strided_convolution():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((3, 2, 3, 3))
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
    values, method, _ = layer_singular_values(layer, (2, 7, 7))
    assert method == "dense"
    expected = scipy.linalg.svdvals(zero_padded_strided_matrix(weight, 7, 2, 1))
    np.testing.assert_allclose(values, expected, rtol=1e-9, atol=1e-9)
