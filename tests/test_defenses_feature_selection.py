"""feature_selection: the mask of the k features most correlated with the label (Tsipras
et al. 2019, Fig. 2c), applied inside the model so attacks see the masked model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from torch import nn

from robench import ConfigError, DataInfo, LoadedData, TrainingContext
from robench.options import parse_options
from robench_plugins.defenses.feature_selection import FeatureSelection

INFO = DataInfo("pair", (1, 2, 3), 2)


def constructed_data() -> LoadedData:
    """Six features with known dependence on the label: feature 4 equals the label (the
    strongest), feature 1 its negative plus noise (strong, anti-correlated), feature 5
    weakly follows it, features 0 and 3 are noise, feature 2 is constant."""
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 20)
    s = 2 * y - 1
    x = rng.uniform(0, 1, size=(40, 6))
    x[:, 4] = y
    x[:, 1] = 0.5 - 0.4 * s + 0.1 * rng.uniform(-1, 1, 40)
    x[:, 5] = 0.5 + 0.1 * s + 0.4 * rng.uniform(-1, 1, 40)
    x[:, 2] = 0.3
    xt = torch.tensor(x, dtype=torch.float32).reshape(40, *INFO.input_shape)
    yt = torch.tensor(y)
    return LoadedData(INFO, xt, yt, xt[:8], yt[:8])


def context(data: LoadedData | None, info: DataInfo = INFO) -> TrainingContext:
    return TrainingContext(info=info, device="cpu", epochs=1, generator=None, attack=None,
                           data=data)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))


def hand_mask(data: LoadedData, k: int) -> np.ndarray:
    """The k features of largest |Pearson r| with the label in {-1, +1} (scipy); a
    constant feature has no correlation (0)."""
    x = data.x_train.flatten(1).numpy().astype(float)
    s = 2 * data.y_train.numpy() - 1
    r = [pearsonr(x[:, j], s).statistic if x[:, j].std() > 0 else 0.0
         for j in range(x.shape[1])]
    keep = sorted(range(len(r)), key=lambda j: -abs(r[j]))[:k]
    mask = np.zeros(len(r))
    mask[keep] = 1
    return mask


@pytest.mark.parametrize("k", [1, 2, 3, 5, 6])
def test_mask_is_the_k_most_correlated_features(k):
    data = constructed_data()
    model = FeatureSelection(FeatureSelection.Options(k=k)).wrap_model(net(), context(data))
    assert model.mask.shape == INFO.input_shape
    np.testing.assert_array_equal(model.mask.flatten().numpy(), hand_mask(data, k))


def test_the_constructed_ranking():
    """The hand ranking itself: label copy, then the anti-correlated feature, then the
    weak one; the constant feature is never above a noise feature's chance correlation."""
    data = constructed_data()
    assert np.flatnonzero(hand_mask(data, 1)).tolist() == [4]
    assert np.flatnonzero(hand_mask(data, 2)).tolist() == [1, 4]
    assert np.flatnonzero(hand_mask(data, 3)).tolist() == [1, 4, 5]
    assert hand_mask(data, 5)[2] == 0


def test_masked_features_do_not_change_the_logits_and_have_zero_gradient():
    data = constructed_data()
    model = FeatureSelection(FeatureSelection.Options(k=2)).wrap_model(net(), context(data))
    masked = model.mask.flatten() == 0
    x = data.x_test.clone()
    moved = x.flatten(1).clone()
    moved[:, masked] += torch.randn(len(x), int(masked.sum()))
    assert torch.equal(model(moved.reshape(x.shape)), model(x))
    kept = x.flatten(1).clone()
    kept[:, ~masked] += 0.5
    assert not torch.allclose(model(kept.reshape(x.shape)), model(x))
    x.requires_grad_(True)
    model(x).sum().backward()
    grad = x.grad.flatten(1)
    assert torch.count_nonzero(grad[:, masked]) == 0
    assert torch.count_nonzero(grad[:, ~masked]) > 0


def test_the_masked_model_is_the_model_of_the_masked_input():
    """Masked features are set to 0 (the inner model sees x * mask)."""
    data = constructed_data()
    inner = net()
    model = FeatureSelection(FeatureSelection.Options(k=3)).wrap_model(inner, context(data))
    zeroed = data.x_test.flatten(1).clone()
    zeroed[:, torch.as_tensor(hand_mask(data, 3) == 0)] = 0
    assert torch.equal(model(data.x_test), inner(zeroed.reshape(data.x_test.shape)))


def test_the_mask_is_saved_with_the_model():
    data = constructed_data()
    model = FeatureSelection(FeatureSelection.Options(k=2)).wrap_model(net(), context(data))
    state = model.state_dict()
    assert torch.equal(state["mask"], model.mask)
    other = FeatureSelection(FeatureSelection.Options(k=5)).wrap_model(net(), context(data))
    other.load_state_dict(state)
    assert torch.equal(other.mask, model.mask)


def test_errors():
    data = constructed_data()
    with pytest.raises(ConfigError, match="k must be >= 1"):
        parse_options(FeatureSelection.Options, {"k": 0})
    with pytest.raises(ValueError, match="k = 7 but the input has 6 features"):
        FeatureSelection(FeatureSelection.Options(k=7)).wrap_model(net(), context(data))
    with pytest.raises(ValueError, match="two classes"):
        FeatureSelection().wrap_model(net(), context(data, DataInfo("ten", (1, 2, 3), 10)))
    with pytest.raises(ValueError, match="no training data"):
        FeatureSelection().wrap_model(net(), context(None))


def test_a_run_trains_and_attacks_the_masked_model(tmp_path, write_toml, registry):
    """Through the host (training, attacks, metrics): the model the run keeps is the
    masked one, so the stored loss gradient of every masked feature is exactly 0."""
    from robench import api

    path = write_toml("""
        [experiment]
        name = "fs"
        seeds = [0]
        [data]
        dataset = "test.blobs"
        [training]
        epochs = 2
        batch_size = 50
        [[models]]
        name = "linear"
        model = "logistic"
        bias = true
        [defenses]
        selected = [{ defense = "feature_selection", k = 2 }]
        [[attacks]]
        name = "fgsm"
        attack = "torchattacks.FGSM"
        epsilons = [0, 0.3]
        [metrics]
        use = ["clean_accuracy", "loss_gradient"]
        [metrics.loss_gradient]
        samples = 3
        [report]
        formats = ["md"]
        """)
    run = api.run(path, out=tmp_path / "run", registry=registry, progress=False)
    assert not run.failures()
    rows = run.metrics[run.metrics["metric"] == "loss_gradient"]
    assert len(rows) == 3 * 4
    per_feature = rows.groupby("feature")["value"].apply(lambda v: (v != 0).any())
    assert per_feature.sum() == 2, per_feature
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Loss gradients" in report and "## Reporter" not in report
