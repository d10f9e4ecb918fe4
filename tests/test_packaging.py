"""Packaging metadata matches the code: every built-in plugin package is installed, every
imported distribution is declared, the licence file matches the metadata, and the
package is marked as typed."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Declared for other packages' sake, never imported by robench itself: numba for
# foolbox's and ART's Brendel-Bethge attacks, pyarrow for pandas' parquet files.
DECLARED_FOR_DEPENDENCIES = {"numba", "pyarrow"}

# Optional modules whose extra declares a distribution of another name.
OPTIONAL_DISTRIBUTIONS = {"mlflow": "mlflow-skinny"}


def names(requirements: list[str]) -> set[str]:
    """Canonical distribution names of ``requirements``, with what their extras add
    (``dask[distributed]`` declares ``distributed`` too)."""
    out = set()
    for text in requirements:
        req = Requirement(text)
        out.add(canonicalize_name(req.name))
        for extra in req.extras:
            for dep in map(Requirement, metadata.requires(req.name) or []):
                if dep.marker is not None and dep.marker.evaluate({"extra": extra}):
                    out.add(canonicalize_name(dep.name))
    return out


def declared() -> dict[str, set[str]]:
    """Canonical distribution names declared, keyed by "core" and each extra."""
    project = PROJECT["project"]
    out = {"core": names(project["dependencies"])}
    for extra, reqs in project["optional-dependencies"].items():
        out[extra] = names(reqs)
    return out


def imported_top_level_modules() -> set[str]:
    """Top-level modules imported anywhere in robench/ and plugins/ (the example plugin
    is a package of its own), inside functions included."""
    names = set()
    files = [*(ROOT / "robench").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    for path in files:
        if "example-plugin" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"robench", "robench_plugins"}


def test_every_builtin_plugin_package_is_installed():
    packages = set(PROJECT["tool"]["setuptools"]["packages"])
    assert PROJECT["tool"]["setuptools"]["package-dir"]["robench_plugins"] == "plugins"
    on_disk = {"robench_plugins" + "".join(f".{p}" for p in init.parent.relative_to(
        ROOT / "plugins").parts) for init in (ROOT / "plugins").rglob("__init__.py")
        if "example-plugin" not in init.parts}
    on_disk |= {"robench" + "".join(f".{p}" for p in init.parent.relative_to(
        ROOT / "robench").parts) for init in (ROOT / "robench").rglob("__init__.py")}
    assert on_disk <= packages, f"not installed: {sorted(on_disk - packages)}"
    assert "*.json" in PROJECT["tool"]["setuptools"]["package-data"]["robench_plugins.attacks"]


def test_every_imported_distribution_is_declared():
    deps = declared()
    everything = set().union(*deps.values())
    providers = metadata.packages_distributions()
    undeclared = {}
    for module in sorted(imported_top_level_modules()):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists:  # an optional integration whose extra is not installed here
            distribution = OPTIONAL_DISTRIBUTIONS.get(module, module)
            assert canonicalize_name(distribution) in everything - deps["core"], \
                f"{module} is imported but neither installed nor declared as an extra"
            continue
        if not dists & everything:
            undeclared[module] = sorted(dists)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_dependencies_declared_for_other_packages_say_why():
    text = (ROOT / "pyproject.toml").read_text()
    assert DECLARED_FOR_DEPENDENCIES <= declared()["core"]
    assert "Brendel-Bethge" in text      # numba's reason, written where it is declared


def test_licence_file_matches_the_metadata():
    assert PROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "LICENSE" in PROJECT["project"]["license-files"]


def test_package_is_marked_typed():
    assert (ROOT / "robench" / "py.typed").exists()
    assert "py.typed" in PROJECT["tool"]["setuptools"]["package-data"]["robench"]


def test_constraints_pin_every_declared_core_and_test_dependency():
    pins = {canonicalize_name(line.split("==")[0])
            for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    deps = declared()
    missing = (deps["core"] | deps["test"]) - pins
    assert not missing, f"not pinned in constraints.txt: {sorted(missing)}"
