"""The loss_gradient metric and the loss_gradients reporter (Tsipras et al. 2019, Fig. 5
and Fig. 8)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from robench import CellData, ConfigError, DataInfo, LoadedData
from robench.options import parse_options
from robench_plugins.metrics.loss_gradient import LossGradient
from robench_plugins.models.linear import LogisticRegression
from robench_plugins.reporters.gradients import gradient_figure, gradient_tile

INFO = DataInfo("pair", (1, 2, 3), 2)


def logistic_cell(n_test: int = 5):
    """A logistic regression with random weights and bias, and random inputs."""
    rng = np.random.default_rng(1)
    model = LogisticRegression(LogisticRegression.Options(bias=True)).build(INFO)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor(rng.normal(size=(1, 6))))
        model.linear.bias.copy_(torch.tensor([0.3]))
    model.eval()
    x = torch.tensor(rng.uniform(0, 1, size=(n_test, 6)), dtype=torch.float32).reshape(
        n_test, *INFO.input_shape)
    y = torch.tensor([0, 1, 1, 0, 1][:n_test])
    data = LoadedData(INFO, x, y, x, y)
    cell = CellData(cell={}, model=model, data=data, history=pd.DataFrame(), device="cpu",
                    attack=None)
    return cell, model.linear.weight.detach().double().numpy()[0], 0.3


def test_logistic_gradient_is_the_closed_form():
    """d CE / d x = (sigmoid(w.x + b) - y) w for logistic regression, computed here in
    numpy from the weights alone."""
    cell, w, b = logistic_cell()
    rows = LossGradient(LossGradient.Options(samples=4)).from_cell(cell)
    x = cell.data.x_test.flatten(1).double().numpy()
    y = cell.data.y_test.numpy()
    for s in range(4):
        expected = (1 / (1 + np.exp(-(x[s] @ w + b))) - y[s]) * w
        mine = rows[rows["sample"] == s].sort_values("feature")
        np.testing.assert_allclose(mine["value"], expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(mine["input"], x[s], rtol=1e-6)
        assert set(mine["label"]) == {y[s]}
    assert set(rows["metric"]) == {"loss_gradient"}
    assert sorted(rows["sample"].unique()) == [0, 1, 2, 3]
    assert len(rows) == 4 * 6


def test_gradient_matches_autograd_of_each_input_alone():
    """The per-input loss (not the batch mean): one input's gradient does not depend on
    how many inputs were asked for."""
    cell, _, _ = logistic_cell()
    few = LossGradient(LossGradient.Options(samples=1)).from_cell(cell)
    many = LossGradient(LossGradient.Options(samples=5)).from_cell(cell)
    np.testing.assert_array_equal(few["value"], many[many["sample"] == 0]["value"])


def test_more_samples_than_the_test_split():
    cell, _, _ = logistic_cell(n_test=2)
    rows = LossGradient(LossGradient.Options(samples=10)).from_cell(cell)
    assert sorted(rows["sample"].unique()) == [0, 1]


def test_samples_must_be_positive():
    with pytest.raises(ConfigError, match="samples must be >= 1"):
        parse_options(LossGradient.Options, {"samples": 0})


def test_single_channel_tiles_are_blue_positive_red_negative():
    gradient = np.zeros((1, 2, 3))
    gradient[0, 0, 0], gradient[0, 0, 1] = 2.0, -1.0
    tile = gradient_tile(gradient)
    positive, negative, zero = tile[0, 0], tile[0, 1], tile[1, 2]
    assert positive[2] > positive[1] > positive[0]  # blue
    assert negative[0] > negative[1] and negative[0] > negative[2]  # red
    assert np.all(zero[:3] > 0.9)  # white


def test_colour_tiles_are_clipped_at_three_sigma_and_scaled():
    rng = np.random.default_rng(0)
    gradient = rng.normal(size=(3, 4, 4))
    gradient[0, 0, 0] = 100.0
    tile = gradient_tile(gradient)
    sigma = gradient.std()
    expected = np.clip((np.moveaxis(gradient, 0, -1) + 3 * sigma) / (6 * sigma), 0, 1)
    np.testing.assert_allclose(tile[..., :3], expected)
    assert tile[0, 0, 0] == 1.0


def test_figure_has_one_row_of_inputs_and_one_per_configuration():
    cell, _, _ = logistic_cell()
    rows = LossGradient(LossGradient.Options(samples=3)).from_cell(cell)
    both = pd.concat([rows.assign(group="standard"), rows.assign(group="robust")])
    figure = gradient_figure(both, INFO.input_shape, bounds=(0.0, 1.0))
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["input 0, y=0", "input 1, y=1", "input 2, y=1", "standard", "robust"]
    image = figure.axes[0].images[0].get_array()
    tile_h = INFO.input_shape[1]
    assert image.shape[0] > 3 * tile_h
