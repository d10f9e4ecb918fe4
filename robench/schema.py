"""The tables of a run directory, column by column: one place that says what each means.

Three tidy tables make up the results of a run (see :mod:`robench.results` for the
files and :mod:`robench.record` for ``run.json``):

* the **results** frame: one row per (cell, attack, epsilon, sample, target);
* the **metrics** frame: one row per metric value, with the columns it is grouped by;
* the **histories** frame: one row per (cell, epoch, split) of training.

Each column is a :class:`Column`: its name, pandas dtype, unit and meaning. Reporters,
metrics and the Python API refer to these definitions rather than to literal names.
This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a stored table: ``name``, pandas ``dtype``, ``unit`` and ``meaning``."""

    name: str
    dtype: str
    unit: str
    meaning: str


CELL_SCHEMA: tuple[Column, ...] = (
    Column("dataset", "str", "", "name of the dataset plugin"),
    Column("model", "str", "", "label of the model entry (``[[models]] name``)"),
    Column("defense", "str", "", "label of the defense stack (a key of ``[defenses]``)"),
    Column("seed", "int64", "", "training seed of the cell (one of ``[experiment] seeds``)"),
    Column("cell", "str", "", "id of the cell: unique per (model, defense, seed)"),
)
"""Columns identifying a trained cell; every table carries them."""

RESULT_SCHEMA: tuple[Column, ...] = CELL_SCHEMA + (
    Column("attack", "str", "", "label of the attack entry (``[[attacks]] name``)"),
    Column("attack_component", "str", "", "name of the attack plugin that ran"),
    Column("library", "str", "", "library that implements the attack (torchattacks, "
           "foolbox, art, robench or a plugin's package)"),
    Column("library_version", "str", "", "version of that library"),
    Column("threat_model", "str", "", "how the budget is measured: linf, l2, l1, l0 or "
           "unbounded"),
    Column("epsilon", "float64", "data scale", "budget of the row, on the scale of the data "
           "(images in [0, 1]: 8/255 is 0.0314); l0 budgets are the fraction of input values "
           "that may change; for unbounded attacks a step size or strength"),
    Column("sample", "int64", "", "index of the input in the test split (or of the generated "
           "input, when ``source`` is not ``data``)"),
    Column("source", "str", "", "where the input came from: ``data``, or e.g. ``noise`` for "
           "fooling images"),
    Column("target", "Int64", "class", "target class of a targeted attack; missing when "
           "untargeted"),
    Column("label", "Int64", "class", "true class; missing for generated inputs"),
    Column("pred_clean", "int64", "class", "the model's prediction on the clean input"),
    Column("pred_adv", "int64", "class", "the model's prediction on the adversarial input, "
           "recomputed by the host (the clean prediction where the input was rejected)"),
    Column("success", "bool", "", "the attack succeeded within budget: the prediction moved "
           "off the label (untargeted) or onto the target (targeted)"),
    Column("distance", "float64", "threat model", "size of the perturbation measured by the "
           "host under the threat model (l0: fraction of values changed)"),
    Column("confidence", "float32", "probability", "softmax probability of ``pred_adv`` at "
           "temperature 1; missing where the attack gave no adversarial input or it was "
           "rejected"),
    Column("margin", "float32", "probability", "top-1 minus top-2 softmax probability on the "
           "adversarial input, at temperature 1; missing as ``confidence``"),
    Column("readout_confidence", "float32", "probability", "the attack's own confidence "
           "read-out of ``pred_adv`` (the fooling attack: softmax of the logits times its "
           "``readout_temperature``, recorded in the unit's details); missing for other "
           "attacks and as ``confidence``"),
    Column("readout_margin", "float32", "probability", "top-1 minus top-2 of that read-out; "
           "missing as ``readout_confidence``"),
    Column("forward_passes", "float64", "passes", "forward passes of the model the attack "
           "spent on this input (on the transfer source as well, for transfer attacks): "
           "per eps for fixed-budget attacks (0 at eps 0), the one search's passes at every "
           "eps for minimal attacks, the whole sweep's at every eps for incremental sweeps "
           "and attacks that sweep themselves; the host's own re-check is not counted. "
           "Inputs that share their "
           "values (one input, several targets) share their passes. Each call of an attack "
           "on a chunk of inputs is the scope of the passes it makes (all the inputs, for "
           "attacks that sweep themselves): a forward of as many rows as the scope counts one "
           "pass for each of its inputs, in whatever order, exact at any budget; a batch of "
           "another size (a later stage on the inputs not yet broken) is attributed row by "
           "row to the input of the scope closest to what the model saw, or whose previous "
           "point is closest (an iterative attack's last step), exact while each point stays "
           "nearest its own input or previous step (otherwise passes can move between "
           "inputs; their sum stays exact). The harness's own probes (the number of classes) "
           "are not counted. Missing for inputs the attack generated itself"),
    Column("backward_passes", "float64", "passes", "gradients with respect to the input "
           "the attack took through the model for this input, counted as "
           "``forward_passes``"),
    Column("correct_clean", "bool", "", "``pred_clean == label``"),
    Column("correct_adv", "bool", "", "``pred_adv == label``"),
    Column("within_budget", "bool", "", "False where the host rejected an adversarial input "
           "that broke its budget or was not finite (the clean prediction then stands)"),
)
"""Columns of the tidy per-sample results frame (``Run.results``)."""

METRIC_SCHEMA: tuple[Column, ...] = (
    Column("metric", "str", "", "name of the metric row, e.g. ``auc`` or "
           "``robust_accuracy``"),
    Column("value", "float64", "per metric", "the number; its meaning and direction are the "
           "metric plugin's (``Metric.higher_is_better``)"),
) + CELL_SCHEMA + (
    Column("attack", "str", "", "attack label, where the metric is per attack"),
    Column("threat_model", "str", "", "threat model, where the metric is per attack"),
    Column("epsilon", "float64", "data scale", "budget, where the metric is per budget"),
    Column("higher_is_better", "boolean", "", "whether a larger value is better for the "
           "defender; missing where the metric has no direction (``Metric.higher_is_better`` "
           "unless the metric set it per row)"),
)
"""Columns of the tidy metrics frame (``Run.metrics``). ``metric`` and ``value`` are
always present; the grouping columns only where the metric is grouped by them, and a
metric may add columns of its own (e.g. ``convention``, ``layer``, ``low``/``high``)."""

HISTORY_SUBSET = 1000
"""Examples of each split the training history measures after every epoch but the last
(:mod:`robench.training`); the full splits are measured after the last."""

HISTORY_SCHEMA: tuple[Column, ...] = (
    Column("epoch", "int64", "", "epoch (1-based); 0 is the model before training"),
    Column("split", "str", "", "``train`` or ``test``"),
    Column("loss", "float64", "nats", "mean cross-entropy on the split, in eval mode: on "
           "the full split at the last epoch, on a fixed seeded subset of "
           f"{HISTORY_SUBSET:,} examples of it (the same every epoch and cell; all of a "
           "smaller split) before"),
    Column("accuracy", "float64", "fraction", "clean accuracy on the split, in eval mode, "
           "measured on the examples ``loss`` is"),
) + CELL_SCHEMA
"""Columns of the training histories frame (``Run.histories``)."""


def names(schema: tuple[Column, ...]) -> tuple[str, ...]:
    """The column names of ``schema``, in order."""
    return tuple(column.name for column in schema)


def describe(schema: tuple[Column, ...]) -> str:
    """``schema`` as a Markdown table (name, dtype, unit, meaning), for docs and reports."""
    lines = ["| column | dtype | unit | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{c.name}` | {c.dtype} | {c.unit} | {c.meaning} |" for c in schema]
    return "\n".join(lines)
