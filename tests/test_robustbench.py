"""The `robustbench` model: RobustBench's model-directory layout, offline."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from test_datasets_loaders import write_cifar

from robench import ConfigError, DataInfo, api
from robench.options import parse_options
from robench_plugins.models.robustbench import RobustBenchModel, RobustBenchOptions

ARCHITECTURE = '''
import torch
from torch import nn


class Tiny(nn.Module):
    """Takes [0, 1] inputs and normalises inside, as RobustBench models do."""

    def __init__(self, width=4):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2471, 0.2435, 0.2616]).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, width, 3, stride=4)
        self.fc = nn.Linear(width * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.conv((x - self.mean) / self.std).relu().flatten(1))
'''
NAME = "Tiny2024Offline"
CIFAR = DataInfo("cifar10", (3, 32, 32), 10)


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A model directory in RobustBench's layout holding one checkpoint, and the module
    defining its architecture; returns (model_dir, the saved network)."""
    (tmp_path / "tiny_arch.py").write_text(ARCHITECTURE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import tiny_arch

    torch.manual_seed(0)
    net = tiny_arch.Tiny()
    folder = tmp_path / "models" / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               folder / f"{NAME}.pt")
    return tmp_path / "models", net


def options(**values):
    return parse_options(RobustBenchOptions, values)


def test_layout_checkpoint_runs_and_reports_without_normalisation(tmp_path, zoo,
                                                                  write_toml, registry):
    model_dir, net = zoo
    write_cifar(tmp_path / "data" / "cifar-10-batches-py", per_batch=6)
    path = write_toml(f"""
        [experiment]
        name = "robustbench_offline"
        device = "cpu"
        [data]
        dataset = "cifar10"
        root = "{tmp_path / 'data'}"
        [training]
        epochs = 0
        [[models]]
        name = "tiny"
        model = "robustbench"
        model_name = "{NAME}"
        model_dir = "{model_dir}"
        architecture = "tiny_arch:Tiny"
        [[attacks]]
        name = "fgsm"
        attack = "torchattacks.FGSM"
        epsilons = ["0", "8/255"]
        [metrics]
        use = ["clean_accuracy"]
        [report]
        formats = ["md"]
    """)
    run = api.run(path, out=tmp_path / "run", registry=registry, progress=False)
    assert run.status == "done", run.failures()
    clean = run.results.query("epsilon == 0").sort_values("sample")
    from robench_plugins.datasets.images import CIFAR10

    x = CIFAR10().load(str(tmp_path / "data")).x_test
    with torch.no_grad():  # the saved network on raw [0, 1] inputs: nothing added in front
        expected = net.eval()(x).argmax(1)
    assert clean["pred_clean"].tolist() == expected.tolist()
    assert (tmp_path / "run" / "report.md").is_file()


def test_weights_are_loaded_and_hashed(zoo):
    model_dir, net = zoo
    opts = options(model_name=NAME, model_dir=str(model_dir), architecture="tiny_arch:Tiny")
    built = RobustBenchModel(opts).build(CIFAR)
    assert type(built).__name__ == "Tiny"  # no normalisation wrapper
    for key, value in net.state_dict().items():
        assert torch.equal(built.state_dict()[key], value)
    import hashlib

    data = (model_dir / "cifar10" / "Linf" / f"{NAME}.pt").read_bytes()
    assert opts.checkpoint_sha256 == hashlib.sha256(data).hexdigest()


def test_missing_weights_say_how_to_get_them_offline(tmp_path):
    with pytest.raises(ConfigError, match="robench does not download.*load_model"):
        options(model_name="Carmon2019Unlabeled", model_dir=str(tmp_path),
                architecture="tiny_arch:Tiny")


def test_ensemble_members_are_hashed_together(tmp_path):
    folder = tmp_path / "cifar10" / "L2"
    folder.mkdir(parents=True)
    for i in range(2):
        torch.save({"w": torch.full((2,), float(i))}, folder / f"Pair.pt_m{i}.pt")
    first = options(model_name="Pair", threat_model="L2", model_dir=str(tmp_path))
    torch.save({"w": torch.full((2,), 5.0)}, folder / "Pair.pt_m1.pt")
    second = options(model_name="Pair", threat_model="L2", model_dir=str(tmp_path))
    assert first.checkpoint_sha256 != second.checkpoint_sha256


@pytest.mark.parametrize("values, message", [
    ({"model_name": NAME, "architecture": "no_colon"}, "package.module:function"),
    ({"model_name": NAME, "architecture_kwargs": {"width": 2}}, "need an architecture"),
    ({"model_name": NAME, "dataset": "mnist"}, "expected one of"),
    ({"model_name": NAME, "checkpoint_sha256": "00"}, "not the expected"),
])
def test_option_errors(zoo, values, message):
    model_dir, _ = zoo
    with pytest.raises(ConfigError, match=message):
        options(model_dir=str(model_dir), **values)


@pytest.mark.skipif(importlib.util.find_spec("robustbench") is None,
                    reason="robustbench is not installed")
def test_the_model_zoo_loads_a_layout_checkpoint_without_pkg_resources(tmp_path):
    """RobustBench's own loader builds the zoo architecture and reads the local file."""
    from robench_plugins.models.robustbench import robustbench_utils

    zoo_entry = robustbench_utils().all_models
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    architecture = zoo_entry[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Standard"]["model"]
    torch.manual_seed(0)
    net = architecture()
    folder = tmp_path / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    torch.save(net.state_dict(), folder / "Standard.pt")
    built = RobustBenchModel(options(model_name="Standard", model_dir=str(tmp_path))
                             ).build(CIFAR)
    for key, value in net.state_dict().items():
        assert torch.equal(built.state_dict()[key], value)
