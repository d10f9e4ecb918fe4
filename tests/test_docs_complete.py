"""The documentation in docs/ keeps up with the code, as datasette's documentation tests
do: every hook, every public name and every kind of component is documented, every page
is reachable from the index, links resolve, the column tables are the schema's own, and
every benchmark file has its protocol. The lists are read from the code at test time, so
names added later are covered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import robench
from robench import hookspecs, schema
from robench.components import KINDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def text() -> str:
    return "\n".join(page.read_text() for page in PAGES)


def hook_names() -> list[str]:
    return sorted(name for name in dir(hookspecs)
                  if name.startswith("robench_") and callable(getattr(hookspecs, name)))


def test_the_lists_are_read():
    assert len(PAGES) >= 10
    assert "robench_register_attacks" in hook_names()
    assert "FixedBudgetAttack" in robench.__all__


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_section(hook):
    hooks_page = (DOCS / "hooks.md").read_text()
    assert re.search(rf"^## {hook}$", hooks_page, re.M), f"docs/hooks.md: no '## {hook}'"


@pytest.mark.parametrize("name", robench.__all__)
def test_every_public_name_is_documented(name):
    assert re.search(rf"\brobench\.{re.escape(name)}\b", text()), \
        f"`robench.{name}` appears nowhere in docs/"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_of_component_has_a_page(kind):
    page = DOCS / f"{kind}s.md"
    assert page.exists(), f"no docs/{kind}s.md"
    assert f"robench.{KINDS[kind].__name__}" in page.read_text()


def test_every_page_is_linked_from_the_index():
    linked = set(LINK.findall((DOCS / "index.md").read_text()))
    missing = [p.name for p in PAGES if p.name != "index.md" and p.name not in linked]
    assert not missing, f"not linked from docs/index.md: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).resolve().exists(), f"{page.name}: broken link {target}"


@pytest.mark.parametrize("table", ["RESULT_SCHEMA", "METRIC_SCHEMA", "HISTORY_SCHEMA"])
def test_run_directory_tables_are_the_schema(table):
    """The column tables are rendered from robench.schema: regenerate the page's table
    with ``robench.schema.describe`` when a column changes."""
    assert schema.describe(getattr(schema, table)) in (DOCS / "run-directory.md").read_text()


def test_every_benchmark_has_its_protocol():
    experiments = (DOCS / "experiments.md").read_text()
    stems = {p.stem.removesuffix("_small") for p in (ROOT / "benchmarks").glob("*.toml")}
    missing = [s for s in sorted(stems - {"quickstart"})
               if f"`{s}.toml`" not in experiments and f"`{s}_small.toml`" not in experiments]
    assert not missing, f"benchmark files without a protocol in docs/experiments.md: {missing}"
