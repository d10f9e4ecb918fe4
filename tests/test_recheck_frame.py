"""Tests of the host's re-check (robench.evaluation): frame.

The rows :func:`robench.evaluation.result_rows` builds are checked column by column
against :data:`robench.schema.RESULT_SCHEMA` (names, order and pandas dtypes), the
constant columns the runner hands it, and the attack's own confidence read-out, with
every expected value written out by hand from a two-feature linear model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from robench import AttackResult, ThreatModel
from robench.evaluation import result_rows
from robench.schema import CELL_SCHEMA, RESULT_SCHEMA

ATTACK_IDENTITY = ("attack", "attack_component", "library", "library_version",
                   "threat_model")
"""The attack's identity columns, which the runner gives as constants (as the cell's)."""

X = torch.tensor([[0.45, 0.5], [0.45, 0.5], [0.55, 0.5], [0.2, 0.5]])
Y = torch.tensor([0, 0, 1, 0])


def _model() -> nn.Module:
    """Logits (0, x0 - 0.5): class 1 iff the first feature exceeds 0.5."""
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        net.bias.copy_(torch.tensor([0.0, -0.5]))
    return net


def _identity() -> dict:
    """A value of the schema's type for every cell and attack identity column."""
    values = {"int64": 3, "str": "text"}
    return {column.name: values[column.dtype] for column in RESULT_SCHEMA
            if column.name in {c.name for c in CELL_SCHEMA} | set(ATTACK_IDENTITY)}


def _rows(result: AttackResult, targets=None, constants=None) -> pd.DataFrame:
    rows, _ = result_rows(_model(), result, X, Y, np.arange(10, 10 + len(X)), targets,
                          threat_model=ThreatModel.LINF, bounds=(0.0, 1.0), num_classes=2,
                          batch_size=3, device="cpu", examples=0, constants=constants)
    return rows


def _sweep() -> list[torch.Tensor]:
    """Adversarials at eps 0.1 and 0.2; at 0.1 the second input moves 0.3 (rejected)."""
    first = X.clone()
    first[0, 0] += 0.1  # 0.55: class 1
    first[1, 0] += 0.3  # over budget
    second = X.clone()
    second[2, 0] -= 0.2  # 0.35: class 0
    return [first, second]


def test_rows_carry_every_schema_column_in_order_with_its_dtype_then_the_extra_ones():
    constants = {**_identity(), "weight": 0.25}
    rows = _rows(AttackResult(epsilons=[0.1, 0.2], adversarials=_sweep()),
                 constants=constants)
    assert list(rows.columns) == [c.name for c in RESULT_SCHEMA] + ["weight"]
    assert {c.name: str(rows[c.name].dtype) for c in RESULT_SCHEMA} == \
        {c.name: c.dtype for c in RESULT_SCHEMA}
    assert rows["weight"].dtype == np.float64
    assert len(rows) == 8
    for name, value in constants.items():
        assert rows[name].tolist() == [value] * 8, name
    # the string columns are pandas' default string dtype, as a column read back from
    # a list of Python strings would be
    assert rows["source"].dtype == pd.Series(["data"]).dtype
    assert rows["source"].tolist() == ["data"] * 8


def test_without_a_read_out_its_columns_are_float32_nan():
    rows = _rows(AttackResult(epsilons=[0.1, 0.2], adversarials=_sweep()))
    for name in ("readout_confidence", "readout_margin"):
        assert rows[name].dtype == np.float32
        assert rows[name].isna().all() and len(rows[name]) == 8


def test_the_read_out_is_eps_major_and_missing_where_the_host_rejected_the_input():
    confidence = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]],
                              dtype=torch.float64)
    margin = torch.tensor([[0.01, 0.02, 0.03, 0.04], [0.05, 0.06, 0.07, 0.08]])
    result = AttackResult(epsilons=[0.1, 0.2], adversarials=_sweep(),
                          details={"readout_confidence": confidence,
                                   "readout_margin": margin})
    rows = _rows(result)
    assert rows["within_budget"].tolist() == [True, False, True, True] + [True] * 4
    nan = float("nan")
    expected = {"readout_confidence": [0.1, nan, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
                "readout_margin": [0.01, nan, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]}
    for name, values in expected.items():
        assert rows[name].dtype == np.float32
        np.testing.assert_array_equal(rows[name].to_numpy(),
                                      np.asarray(values, dtype=np.float32))


def test_int32_targets_are_stored_as_the_schema_int64_and_judge_success():
    targets = torch.tensor([1, 1, 0, 1], dtype=torch.int32)
    rows = _rows(AttackResult(epsilons=[0.1, 0.2], adversarials=_sweep()), targets)
    assert rows["target"].dtype == pd.Int64Dtype()
    assert rows["target"].tolist() == [1, 1, 0, 1] * 2
    # predictions by hand: eps 0.1 -> 1, 0 (rejected: clean), 1, 0; eps 0.2 -> 0, 0, 0, 0
    assert rows["pred_adv"].tolist() == [1, 0, 1, 0, 0, 0, 0, 0]
    assert rows["success"].tolist() == [True, False, False, False,
                                        False, False, True, False]
    assert rows["sample"].tolist() == [10, 11, 12, 13] * 2
    assert rows["epsilon"].tolist() == [0.1] * 4 + [0.2] * 4
