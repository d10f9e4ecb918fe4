"""Shared test setup: a clean host (no auto-loaded third-party plugins), few threads,
and helpers to write experiment files."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("ROBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
TESTS = Path(__file__).parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))


def pytest_configure(config):
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def registry():
    """Built-ins plus the test plugin (tests/plugin_fixtures.py), nothing installed."""
    import plugin_fixtures

    from robench.plugins import build_registry

    return build_registry(autoload=False, plugins=[plugin_fixtures])


@pytest.fixture
def write_toml(tmp_path):
    """Write a dedented experiment file into tmp_path and return its path."""
    def write(text: str, name: str = "exp.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write


def fake_distribution(root: Path, name: str, entry_points: dict[str, str]) -> Path:
    """Create an installed-distribution stub (dist-info) declaring robench entry points.

    Adding ``root`` to sys.path makes ``importlib.metadata`` see it exactly as it sees a
    pip-installed plugin package.
    """
    info = root / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[robench]\n{lines}\n")
    return root


SMOKE = """
    [experiment]
    name = "smoke"
    seeds = [0]
    device = "cpu"

    [data]
    dataset = "test.blobs"

    [training]
    epochs = 3
    lr = 0.01
    batch_size = 32

    [[models]]
    name = "mlp"
    hidden = [16]

    [defenses]
    none = []
    l2 = [{ defense = "weight_decay", coefficient = 0.01 }]

    [[attacks]]
    name = "noise"
    attack = "test.sign_noise"
    epsilons = { start = 0, stop = 0.5, num = 6 }
    repeats = 2

    [metrics]
    use = ["test.row_count"]

    [report]
    formats = []
"""
"""A tiny experiment on the test plugin: 2 cells, 1 attack each, a few seconds."""
