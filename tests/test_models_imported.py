"""The `import` model: a user's factory from their own file, weights from a checkpoint."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from robench import ConfigError, DataInfo, api
from robench.config import load_experiment
from robench.runner import plan
from robench_plugins.models.imported import ImportedModel, ImportedOptions, checkpoint_digest

USER_FILE = '''
from torch import nn


def linear(inputs=64, classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, classes))


def not_a_model():
    return "a string"
'''

SAMPLES = 120
DIGITS = DataInfo("digits", (1, 8, 8), 10)


@pytest.fixture(scope="module")
def sklearn_fit():
    """A multinomial logistic regression fitted by scikit-learn on the digits split the
    `digits` dataset uses (stratified, 25 % test, seed 0), and its test accuracy."""
    bunch = load_digits()
    x = bunch.images.reshape(len(bunch.images), -1) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, bunch.target, test_size=0.25,
                                              random_state=0, stratify=bunch.target)
    clf = LogisticRegression(max_iter=300).fit(x_tr, y_tr)
    state = {"1.weight": torch.tensor(clf.coef_, dtype=torch.float32).contiguous(),
             "1.bias": torch.tensor(clf.intercept_, dtype=torch.float32)}
    return state, clf.score(x_te[:SAMPLES], y_te[:SAMPLES])


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "user_models.py"
    path.write_text(USER_FILE)
    return path


def options(**values):
    from robench.options import parse_options

    return parse_options(ImportedOptions, values)


def test_user_model_from_a_file_evaluated_with_its_checkpoint(tmp_path, user_file,
                                                              sklearn_fit, write_toml,
                                                              registry):
    state, accuracy = sklearn_fit
    checkpoint = tmp_path / "weights.pt"
    torch.save({"state_dict": state}, checkpoint)
    path = write_toml(f"""
        [experiment]
        name = "own_model"
        device = "cpu"
        [data]
        dataset = "digits"
        [training]
        epochs = 0
        [[models]]
        name = "logreg"
        model = "import"
        target = "{user_file}:linear"
        kwargs = {{ inputs = 64 }}
        checkpoint = "{checkpoint}"
        [[attacks]]
        name = "fgsm"
        attack = "torchattacks.FGSM"
        epsilons = [0, 0.05, 0.1]
        samples = {SAMPLES}
        [metrics]
        use = ["clean_accuracy"]
        [report]
        formats = ["md"]
    """)
    run = api.run(path, out=tmp_path / "run", registry=registry, progress=False)
    assert run.status == "done", run.failures()
    clean = run.results.query("epsilon == 0")
    assert len(clean) == SAMPLES
    assert clean["correct_clean"].mean() == pytest.approx(accuracy)
    acc = run.results.groupby("epsilon")["correct_adv"].mean()
    assert acc.iloc[-1] < acc.iloc[0]
    assert (tmp_path / "run" / "report.md").is_file()


def test_safetensors_and_torch_checkpoints_load_the_same_weights(tmp_path, user_file,
                                                                 sklearn_fit):
    from safetensors.torch import save_file

    state, _ = sklearn_fit
    save_file(state, tmp_path / "w.safetensors")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        net = ImportedModel(options(target=f"{user_file}:linear",
                                    checkpoint=str(tmp_path / name))).build(DIGITS)
        assert torch.equal(net[1].weight, state["1.weight"])
        assert torch.equal(net[1].bias, state["1.bias"])


def test_checkpoint_content_not_path_is_in_the_cache_key(tmp_path, user_file, write_toml,
                                                        registry):
    checkpoint = tmp_path / "w.pt"
    text = f"""
        [data]
        dataset = "digits"
        [[models]]
        name = "m"
        model = "import"
        target = "{user_file}:linear"
        checkpoint = "{checkpoint}"
        [[attacks]]
        attack = "torchattacks.FGSM"
        epsilons = [0.1]
    """
    path = write_toml(text)

    def cell_key(content: bytes):
        checkpoint.write_bytes(content)
        return plan(load_experiment(path, registry=registry))[0][0].key

    def saved(net) -> bytes:
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        return buffer.getvalue()

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    content = saved(net)
    first = cell_key(content)
    checkpoint.unlink()
    same = cell_key(content)  # a new file of the same content
    torch.nn.init.zeros_(net[1].bias)
    changed = cell_key(saved(net))  # same path, other content
    assert first == same != changed


def test_digest_is_the_sha256_of_the_file(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"weights" * 1000)
    assert checkpoint_digest(path) == hashlib.sha256(b"weights" * 1000).hexdigest()


def test_expected_digest_is_checked(tmp_path, user_file):
    path = tmp_path / "w.pt"
    torch.save(torch.nn.Linear(64, 10).state_dict(), path)
    digest = checkpoint_digest(path)
    assert options(target=f"{user_file}:linear", checkpoint=str(path),
                   checkpoint_sha256=digest.upper()).checkpoint_sha256 == digest
    with pytest.raises(ConfigError, match="not the expected"):
        options(target=f"{user_file}:linear", checkpoint=str(path), checkpoint_sha256="ab")


def test_a_checkpoint_replaced_after_reading_is_refused(tmp_path, user_file):
    path = tmp_path / "w.pt"
    torch.save({"1.weight": torch.zeros(10, 64), "1.bias": torch.zeros(10)}, path)
    model = ImportedModel(options(target=f"{user_file}:linear", checkpoint=str(path)))
    torch.save({"1.weight": torch.ones(10, 64), "1.bias": torch.zeros(10)}, path)
    with pytest.raises(ValueError, match="changed since"):
        model.build(DIGITS)


@pytest.mark.parametrize("values, message", [
    ({}, "missing required option"),
    ({"target": "no_colon"}, "package.module:factory"),
    ({"target": "m:f", "checkpoint": "/nonexistent/w.pt"}, "not found"),
    ({"target": "m:f", "checkpoint_sha256": "ab"}, "without a checkpoint"),
])
def test_option_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        options(**values)


@pytest.mark.parametrize("target, kwargs, message", [
    ("robench_no_such_module:f", {}, "cannot import"),
    ("{file}:missing", {}, "no attribute"),
    ("{file}:not_a_model", {}, "not a torch.nn.Module"),
    ("{file}:linear", {"classes": 3}, r"expected logits of shape \(2, 10\)"),
    ("{dir}/absent.py:linear", {}, "not found"),
])
def test_build_errors_name_the_problem(user_file, target, kwargs, message):
    target = target.format(file=user_file, dir=user_file.parent)
    model = ImportedModel(options(target=target, kwargs=kwargs))
    with pytest.raises(ValueError, match=message):
        model.build(DIGITS)


def test_a_checkpoint_of_another_architecture_is_an_error(tmp_path, user_file):
    path = tmp_path / "w.pt"
    torch.save(torch.nn.Linear(64, 3).state_dict(), path)
    model = ImportedModel(options(target=f"{user_file}:linear", checkpoint=str(path)))
    with pytest.raises(ValueError, match="does not fit this model"):
        model.build(DIGITS)


def test_in_model_normalisation_applies_before_the_factory_model(user_file):
    net = ImportedModel(options(target=f"{user_file}:linear", mean=[0.5],
                                std=[0.25])).build(DIGITS)
    x = torch.rand(3, 1, 8, 8)
    inner = next(m for m in net.modules() if isinstance(m, torch.nn.Sequential))
    np.testing.assert_allclose(net(x).detach(), inner((x - 0.5) / 0.25).detach(), rtol=1e-6)
