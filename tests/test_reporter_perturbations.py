"""The targeted-perturbation figure (Tanay & Griffin 2016's LeNet figure) renders from a
small run, and what it shows are the stored artifacts: tampering with a stored
adversarial changes the figure and its norms."""

from __future__ import annotations

import numpy as np
import pytest

EXPERIMENT = """
    [experiment]
    name = "perturbations"
    seeds = [0]
    device = "cpu"

    [data]
    dataset = "digits"

    [training]
    epochs = 5
    lr = 0.01
    batch_size = 64

    [[models]]
    name = "mlp"
    model = "mlp"
    hidden = [16]

    [defenses]
    none = []
    l2 = [{ defense = "weight_decay", coefficient = 0.01 }]

    [[attacks]]
    name = "hc"
    attack = "high_confidence"
    targets = "cyclic"
    step = 0.05
    epsilons = { start = 0, stop = 40, num = 3 }
    samples = 60
    examples = 40

    [metrics]
    use = ["clean_accuracy"]

    [report]
    formats = []
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import textwrap

    import robench

    path = tmp_path_factory.mktemp("perturbations")
    (path / "exp.toml").write_text(textwrap.dedent(EXPERIMENT))
    run = robench.run(path / "exp.toml", out=path / "run", progress=False, report=False)
    assert not run.failures(), run.failures()
    return run.path


def canvas(figure) -> np.ndarray:
    (ax,) = figure.axes
    return np.asarray(ax.images[0].get_array())


def labels(figure) -> list[str]:
    return [t.get_text() for t in figure.axes[0].texts]


def test_one_column_per_class_three_rows_per_configuration(run_dir):
    from robench.results import RunStore
    from robench_plugins.reporters.perturbations import TargetedPerturbations

    (section,) = TargetedPerturbations().sections(RunStore(run_dir))
    (figure,) = section.figures
    (table,) = section.tables
    store = RunStore(run_dir)
    arrays = next(iter(store.artifacts().values()))
    classes = sorted(set(arrays["labels"].tolist()))
    assert len(classes) >= 8  # 40 stored digits hold (almost) every class
    assert list(table["configuration"]) == ["none", "l2"]
    assert [c for c in table.columns if c != "configuration"] == [str(c) for c in classes]
    image = canvas(figure)
    tile, gap_x = 8, 1  # 8x8 digits; the mosaic's gaps: ceil(0.12 * 8) = 1, ceil(0.25 * 8) = 2
    assert image.shape[1] == len(classes) * (tile + gap_x) - gap_x
    assert image.shape[0] == 2 * len(("original", "adversarial", "perturbation")) * (tile + 2)
    texts = labels(figure)
    assert sum(t.startswith("L2 ") or t == "not found" for t in texts) == 2 * len(classes)
    first = {c: int(np.flatnonzero(arrays["labels"] == c)[0]) for c in classes}
    assert f"none: {classes[0]} → {(classes[0] + 1) % 10}" in texts
    assert all(int(arrays["targets"][i]) == (c + 1) % 10 for c, i in first.items())
    assert sum(t.startswith("ŷ=") for t in texts) == 2 * len(classes)


def test_the_figure_shows_the_stored_adversarials_and_their_norms(run_dir):
    """Overwrite one stored adversarial with a known image: the adversarial tile, the
    perturbation's norm in the table and its label follow the file."""
    from robench.results import RunStore
    from robench_plugins.reporters import _common as C
    from robench_plugins.reporters.examples import first_seed_cells, to_rgba
    from robench_plugins.reporters.perturbations import TargetedPerturbations

    store = RunStore(run_dir)
    (cell, attack), arrays = next(iter(store.artifacts().items()))
    path = store.artifact_path(cell, attack)
    original = path.read_bytes()
    try:
        label = int(min(arrays["labels"]))
        i = int(np.flatnonzero(arrays["labels"] == label)[0])
        planted = np.zeros_like(arrays["clean"][i])
        planted[..., 2, :] = 1.0  # one bright row: no model produced this
        changed = dict(arrays)
        changed["adversarial"] = arrays["adversarial"].copy()
        changed["adversarial"][-1, i] = planted
        changed["pred_adv"] = arrays["pred_adv"].copy()
        changed["pred_adv"][-1, i] = arrays["targets"][i]  # reached
        np.savez(path, **changed)

        (section,) = TargetedPerturbations().sections(RunStore(run_dir))
        expected = float(np.linalg.norm((planted - arrays["clean"][i]).ravel()))
        record = store.record()
        shown = list(first_seed_cells(record, C.group_keys(record)).items())
        block = [c for c, _ in shown].index(cell)
        table = section.tables[0]
        row = table[table["configuration"] == shown[block][1]].iloc[0]
        assert float(row[str(label)]) == pytest.approx(expected)
        assert f"L2 {expected:.2f}" in labels(section.figures[0])
        image = canvas(section.figures[0])
        top = (3 * block + 1) * (8 + 2) + 2  # the adversarial row of the tampered cell
        np.testing.assert_allclose(image[top:top + 8, 0:8], to_rgba(planted, 0.0, 1.0))
    finally:
        path.write_bytes(original)


def test_no_section_without_a_targeted_minimal_attack(tmp_path):
    from robench.results import RunStore
    from robench_plugins.reporters.perturbations import first_of_each_class

    assert first_of_each_class([3, 1, 3, 0, 1]) == {0: 3, 1: 1, 3: 0}
    from robench_plugins.reporters.perturbations import TargetedPerturbations

    empty = RunStore(tmp_path)
    assert not empty.exists()
    with pytest.raises(Exception):  # noqa: B017 - no run.json: nothing to report on
        TargetedPerturbations().sections(empty)
