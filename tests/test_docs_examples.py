"""The component examples in docs/ run: every Python block that only defines things is
executed, and the components it defines are exercised — attacks through the conformance
kit, datasets loaded, models built, executors mapped, metrics and reporters fed a small
run's tables."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import robench

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef)


def definition_blocks() -> list[tuple[str, str]]:
    """(page name, code) of every Python block made only of imports and definitions."""
    out = []
    for page in sorted(DOCS.glob("*.md")):
        for code in BLOCK.findall(page.read_text()):
            if all(isinstance(node, DEFINITIONS) for node in ast.parse(code).body):
                out.append((page.name, code))
    return out


def components() -> list[tuple[str, type]]:
    """Every component class the docs' examples define, with its page."""
    found = []
    for page, code in definition_blocks():
        namespace: dict = {}
        exec(compile(code, f"docs/{page}", "exec"), namespace)
        found += [(page, obj) for obj in namespace.values()
                  if isinstance(obj, type) and issubclass(obj, robench.Component)
                  and obj.name]
    return found


COMPONENTS = components()


def test_every_component_page_has_a_running_example():
    kinds = {cls.kind for _, cls in COMPONENTS}
    assert kinds == {"dataset", "model", "defense", "attack", "metric", "reporter",
                     "executor"}


@pytest.mark.parametrize("page,cls", COMPONENTS, ids=lambda v: getattr(v, "name", v))
def test_example_component(page, cls, tmp_path):
    import torch

    assert cls.__doc__, f"{page}: {cls.name} has no docstring"
    torch.manual_seed(0)
    x = torch.rand(32, 1, 4, 4)
    y = (x.flatten(1).mean(1) > 0.5).long()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
    component = cls()
    if cls.kind == "attack":
        from robench.testing import check_attack

        report = check_attack(component, model, x, y, [0.0, 0.1, 0.5])
        assert report.ok, report.summary()
    elif cls.kind == "dataset":
        data = component.load(None)
        assert len(data.x_train) == len(data.y_train) > 0
        assert data.x_test.shape[1:] == data.info.input_shape
    elif cls.kind == "model":
        info = robench.DataInfo("toy", (1, 4, 4), 3)
        assert component.build(info)(x).shape == (32, 3)
    elif cls.kind == "defense":
        info = robench.DataInfo("toy", (1, 4, 4), 2)
        ctx = robench.TrainingContext(info=info, device="cpu", epochs=1,
                                      generator=torch.Generator().manual_seed(0), attack=None)
        xt, yt = component.transform_batch(model, x, y, 0, ctx)[:2]
        assert xt.shape == x.shape and float(xt.min()) >= 0 and float(xt.max()) <= 1
    elif cls.kind == "executor":
        assert sorted(component.map(lambda i: i * i, [1, 2, 3])) == [(1, 1), (2, 4), (3, 9)]
    elif cls.kind in ("metric", "reporter"):
        run = small_run(tmp_path)
        if cls.kind == "metric":
            rows = component.from_results(run.results)
            assert {"metric", "value"} <= set(rows.columns) and len(rows)
        else:
            sections = component.sections(run.store)
            assert sections and all(isinstance(s, robench.ReportSection) for s in sections)


def small_run(tmp_path):
    """A finished one-cell run of FGSM on a linear model."""
    import torch

    torch.manual_seed(0)
    x = torch.rand(20, 1, 4, 4)
    y = (x.flatten(1).mean(1) > 0.5).long()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    return robench.evaluate(model, x, y, ["torchattacks.FGSM"], epsilons=[0.0, 0.1],
                            out=tmp_path / "run", device="cpu")
