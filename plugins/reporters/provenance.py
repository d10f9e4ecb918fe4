"""Provenance and failures: what ran, with what, where, how long, and what broke.

Everything comes from the run record (``run.json``, read as
:class:`robench.record.RunRecord`; and the copy of the experiment file in the run
directory): configuration and its hash, package versions, device, seeds, timings, the
status of every cell and (cell, attack) unit, and the error and traceback of each failure.
"""

from __future__ import annotations

import json
from typing import Any

from robench import Reporter, ReportSection

from . import _common as C

MAX_TRACEBACK_LINES = 40
"""Lines kept from the end of each traceback (the full text stays in run.json)."""


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "n/a"
    minutes, secs = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


def _tail(text: str) -> str:
    lines = (text or "").rstrip().splitlines()
    if len(lines) <= MAX_TRACEBACK_LINES:
        return "\n".join(lines)
    return "\n".join([f"... ({len(lines) - MAX_TRACEBACK_LINES} lines omitted, see run.json)",
                      *lines[-MAX_TRACEBACK_LINES:]])


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}`` (lists of dicts indexed ``a[0].b``)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
    else:
        out[prefix] = value
    return out


def failures(record) -> tuple[list[dict], list[dict], list[dict]]:
    """Failed cells, failed (cell, attack) units and failed metrics of a run record,
    each with its error (the last line of the traceback for metrics)."""
    cells = [{"cell": cid, **(rec.cell or {}), "error": rec.error or "",
              "traceback": rec.traceback or ""}
             for cid, rec in record.cells.items() if rec.status == "failed"]
    units = [{"unit": uid, "cell": rec.cell, "attack": rec.attack,
              "error": rec.error or "", "traceback": rec.traceback or ""}
             for uid, rec in record.units.items() if rec.status == "failed"]
    metrics = [{"metric": name, "error": (trace or "").strip().splitlines()[-1:][0]
                if (trace or "").strip() else "", "traceback": trace or ""}
               for name, trace in record.metric_errors.items()]
    return cells, units, metrics


def failure_sections(record) -> list[ReportSection]:
    """Failed cells, units and metrics: a table of errors at the top of the report and
    their tracebacks at the end (nothing when everything completed)."""
    import pandas as pd

    cells, units, metrics = failures(record)
    if not cells and not units and not metrics and record.status != "failed":
        return []
    parts = []
    if record.status == "failed":
        error = record.extra.get("error")
        parts.append("The run itself ended with status **failed**" +
                     (f": {C.inline_code(str(error))}" if error else "") + ".")
    parts.append(f"{len(cells)} cell(s), {len(units)} attack unit(s) and {len(metrics)} "
                 "metric(s) failed; everything else completed and is reported below. "
                 "Failed units have no rows in any table or figure; the tracebacks are at "
                 "the end of the report.")
    tables = []
    for items, title in ((cells, "Failed cells"), (units, "Failed attack units"),
                         (metrics, "Failed metrics")):
        if items:
            frame = pd.DataFrame(items).drop(columns=["traceback"])
            frame.attrs["title"] = title
            tables.append(frame)
    out = [ReportSection(title="Failures", text="\n\n".join(parts), tables=tables, order=5)]
    traces = [f"#### {C.md(item.get('unit') or item.get('metric') or item['cell'])}\n\n"
              + C.code_block(_tail(item["traceback"]))
              for item in cells + units + metrics if item["traceback"]]
    if traces:
        out.append(ReportSection(title="Failure tracebacks", text="\n\n".join(traces),
                                 order=95))
    return out


def _versions_table(record):
    import pandas as pd

    versions = dict(record.versions or {})
    plugins = versions.pop("plugins", None) or {}
    rows = [{"package": k, "version": str(v)} for k, v in versions.items()]
    if isinstance(plugins, dict):
        rows += [{"package": f"plugin {k}", "version": str(v)} for k, v in plugins.items()]
    frame = pd.DataFrame(rows, columns=["package", "version"])
    frame.attrs["title"] = "Versions"
    return frame


def _attacks_table(record, eps_scale):
    import pandas as pd

    rows = []
    for label, meta in record.attacks.items():
        eps = [float(e) for e in meta.epsilons or []]
        tm = meta.threat_model
        rows.append({"attack": label, "component": meta.component,
                     "library": meta.library or "", "threat model": tm,
                     "budgets": len(eps),
                     "range": (f"{C.format_eps(min(eps), tm, eps_scale)} … "
                               f"{C.format_eps(max(eps), tm, eps_scale)}") if eps else ""})
    frame = pd.DataFrame(rows)
    frame.attrs["title"] = "Attacks"
    return frame


def _cells_table(record):
    """Per cell: identity, status, timings, attack units done and, where the host
    recorded it, how many adversarial inputs it rejected for breaking their budget."""
    import pandas as pd

    units = record.units
    rows = []
    for cid, rec in record.cells.items():
        cell = rec.cell or {}
        mine = [u for u in units.values() if u.cell == cid]
        seconds = rec.train_seconds if rec.train_seconds is not None \
            else rec.extra.get("seconds")
        row = {"cell": cid, **{k: cell.get(k) for k in (*C.GROUP_KEYS, "seed")},
               "status": rec.status, "cached": rec.cached,
               "train time": _duration(seconds),
               "attack units": f"{sum(u.status == 'done' for u in mine)}/{len(mine)} done",
               "attack time": _duration(sum(float(u.seconds or 0) for u in mine))}
        if any(u.over_budget is not None for u in units.values()):
            row["rejected over budget"] = sum(int(u.over_budget or 0) for u in mine)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["title"] = "Cells"
    return frame


def config_text(run, record) -> str:
    """The experiment file as run (``experiment.toml``) or, failing that, the parsed
    config as JSON."""
    path = run.path / "experiment.toml"
    if path.is_file():
        return C.code_block(path.read_text(), "toml")
    config = record.experiment.config
    if config is None:
        return "Not recorded."
    return C.code_block(json.dumps(config, indent=2, default=str), "json")


class Provenance(Reporter):
    """Provenance (config and hash, versions, device, seeds, timings, per-cell status)
    and a failures section with each failed cell's and unit's error and traceback."""

    name = "provenance"

    def sections(self, run):
        record = run.record()
        experiment = record.experiment
        data = C.data_info(record)
        facts = [
            ("experiment", experiment.name),
            ("experiment file", experiment.file),
            ("config hash", experiment.config_hash),
            ("overrides (-o, not in the file below)",
             ", ".join(f"{k} = {json.dumps(v, default=str)}"
                       for k, v in record.extra.get("overrides", {}).items()) or None),
            ("git commit", record.git_commit),
            ("status", record.status),
            ("robench", record.robench_version),
            ("device", record.device),
            ("seeds", record.seeds),
            ("started", record.started),
            ("finished", record.finished),
            ("duration", _duration(record.duration_s)
             if record.duration_s is not None else None),
            ("data", ", ".join(f"{k} {data[k]}" for k in
                               ("name", "input_shape", "num_classes", "bounds", "eps_scale")
                               if data.get(k) is not None) if data.get("name") else None),
            ("data source", data.get("source")),
            ("kept from an earlier run", record.kept_summary()),
        ]
        text = "\n".join(f"- **{k}**: {C.inline_code(str(v))}" for k, v in facts
                         if v not in (None, "", []))
        text += "\n\n#### Experiment file\n\n" + config_text(run, record)
        tables = [t for t in (_versions_table(record), _attacks_table(record, data["eps_scale"]),
                              _cells_table(record)) if len(t)]
        return [ReportSection(title="Provenance", text=text, tables=tables, order=90),
                *failure_sections(record)]

    def compare(self, runs):
        """Key facts side by side, then every config key and version that differs."""
        import pandas as pd

        records = {label: run.record() for label, run in runs.items()}

        def facts(rec):
            cells, units, metrics = failures(rec)
            return {"experiment": rec.experiment.name,
                    "config hash": rec.experiment.config_hash,
                    "status": rec.status, "robench": rec.robench_version,
                    "device": rec.device, "finished": rec.finished,
                    "duration": _duration(rec.duration_s),
                    "failed cells / units / metrics":
                        f"{len(cells)} / {len(units)} / {len(metrics)}"}

        overview = pd.DataFrame({label: facts(rec) for label, rec in records.items()})
        overview = overview.rename_axis("fact").reset_index()
        overview.attrs["title"] = "Runs"
        tables = [overview]
        for title, getter in (("Configuration differences",
                               lambda r: flatten(r.experiment.config)),
                              ("Version differences", lambda r: flatten(r.versions or {}))):
            flat = {label: getter(rec) for label, rec in records.items()}
            keys = sorted(set().union(*flat.values()))
            differ = [k for k in keys
                      if len({json.dumps(f.get(k), default=str) for f in flat.values()}) > 1]
            if differ:
                frame = pd.DataFrame({"key": differ, **{
                    label: [json.dumps(f.get(k), default=str) if k in f else "—"
                            for k in differ] for label, f in flat.items()}})
                frame.attrs["title"] = title
                tables.append(frame)
        text = ("Only keys whose values differ between runs are listed."
                if len(tables) > 1 else "The runs share configuration and versions.")
        return [ReportSection(title="Provenance across runs", text=text, tables=tables,
                              order=90)]
