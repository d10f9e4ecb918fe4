"""A leaderboard table of a run attacked at one budget per threat model.

RobustBench ranks models by clean and robust accuracy at one budget per threat model
against a fixed ensemble (AutoAttack). A run whose every threat model was attacked at a
single budget, the same for all of its attacks, is shaped like that
(:func:`robench.leaderboard.leaderboard_budgets`; the standard AutoAttack preset is):
for it this reporter shows one row per model, defense, seed and threat model with
exactly the numbers of the ``leaderboard.json`` that :meth:`robench.api.Run.report`
writes beside the report (:func:`robench.leaderboard.leaderboard`): the rows of the
``worst_case`` and ``clean_accuracy`` metrics, and n/a with the reason where the run did
not use them. A reporter only returns sections, so the file itself is written by
``Run.report`` after rendering. For an eps sweep it shows nothing: the accuracy curves
are that run's answer.
"""

from __future__ import annotations

from robench import Reporter, ReportSection

from . import _common as C

ORDER = 9
"""Right after the robustness-at-a-glance section, before the summary."""


class Leaderboard(Reporter):
    """Clean and robust accuracy against the run's attack ensemble at its single budget
    per threat model, as RobustBench's leaderboard lists them (the rows of
    ``leaderboard.json``); nothing for runs that sweep budgets."""

    name = "leaderboard"

    def sections(self, run):
        import pandas as pd

        from robench.leaderboard import LEADERBOARD_FILE, leaderboard, leaderboard_budgets

        record = run.record()
        if leaderboard_budgets(record) is None:
            return []
        eps_scale = C.data_info(record)["eps_scale"]
        entries = leaderboard(run)
        rows = [{"dataset": e["dataset"], "model": e["model"], "defense": e["defense"],
                 "seed": e["seed"], "threat model": e["threat_model"],
                 "ε": C.format_eps(e["epsilon"], e["threat_model"], eps_scale),
                 "clean accuracy": C.percent(e["clean_accuracy"]),
                 "robust accuracy": C.percent(e["robust_accuracy"]),
                 "samples": e["samples"], "attacks": ", ".join(e["attacks"])}
                for e in entries]
        table = pd.DataFrame(rows)
        table.attrs["title"] = "Leaderboard: robust accuracy against every attack at once"
        text = ("Each input counts as robust only when it is classified correctly and every "
                "attack of its threat model failed on it, as AutoAttack reports its "
                f"ensemble. The same entries, with library versions and each attack's "
                f"settings, are in `{LEADERBOARD_FILE}` beside this report.")
        if any(e["missing_attacks"] for e in entries):
            text += (" A robust accuracy of n/a means some attack of the ensemble has no "
                     "results for that configuration (its failure is listed in this report).")
        notes = sorted({n for e in entries for n in e["notes"]})
        if notes:
            text += " n/a: " + "; ".join(notes) + "."
        return [ReportSection(title="Leaderboard", text=text, tables=[table], order=ORDER)]
