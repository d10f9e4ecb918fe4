"""Reports rendered from a stored run alone: ``report.html`` and ``report.md``.

Every registered reporter (``robench.plugins`` kind ``"reporter"``) contributes
:class:`~robench.components.ReportSection` objects read from a
:class:`~robench.results.RunStore`; no model and no torch are needed, so
``robench report RUN_DIR`` rebuilds the report of any run directory, on any machine.

- ``report.html`` is one self-contained file: inline CSS, figures embedded as base64 PNG
  ``data:`` URIs, no script and no external request; it reads offline.
- ``report.md`` has the same content, with the figures as PNG files in ``figures/``.

Section Markdown is converted with Python-Markdown with raw HTML and Markdown images
disabled, and links are kept only to http(s) and relative URLs, so no reporter text can
inject markup, a script link or make the page fetch anything. Every value from the run
that a reporter writes goes through :func:`escape_markdown`; titles, captions and table
cells are escaped here.

``[report] reporters`` in the experiment file chooses the reporters; by default every
registered reporter whose ``by_default`` is true contributes.

``render_comparison`` does the same over several runs: reporters that define
``compare(runs)`` (a mapping of run label to RunStore) add sections with the deltas
between runs. A reporter that raises is reported inside the report, in a section with its
error and traceback, and never stops the others.

The output is deterministic: the same run directory gives byte-identical files (no
render time or absolute path in the report, PNGs written without metadata).

For reporter authors: section ``text`` is Markdown (tables, fenced code, lists; raw HTML
is shown as text); ``tables`` are DataFrames (``frame.attrs["title"]`` is the caption;
``**bold**`` inside a cell is kept); ``figures`` are matplotlib figures, best created as
``matplotlib.figure.Figure`` objects (no pyplot state), and ``fig.set_label(...)`` is
the figure's caption. Sections are ordered by ``order``: 0 errors, 5 failures,
8 robustness at a glance, 10 summary, 20 accuracy curves, 30 metrics, 40 training,
60 examples, 65 filters, 90 provenance.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import math
import os
import re
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .components import ReportSection
from .results import RunStore

FIGURE_DPI = 110
"""Resolution of the PNG figures (small files, sharp enough on screen)."""

REPORT_FORMATS = ("html", "md")

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0 auto; max-width: 1100px; padding: 1.5rem 2rem 4rem; color: #1f2328;
  line-height: 1.5; background: #fff; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.3rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem;
  margin-top: 2.2rem; }
h3, h4 { font-size: 1.05rem; margin-top: 1.4rem; }
.subtitle { color: #59636e; margin-top: 0; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px;
  padding: .6rem 1.2rem; margin: 1rem 0; }
nav.toc ol { margin: .2rem 0; padding-left: 1.2rem; }
.table-wrap { overflow-x: auto; margin: .8rem 0 1.2rem; }
table { border-collapse: collapse; font-size: .85rem; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .2rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: left;
  vertical-align: top; }
th { background: #f6f8fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fbfcfd; }
td strong { color: #0a5c2b; }
figure { margin: 1rem 0 1.6rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #59636e; font-size: .85rem; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px;
  padding: .6rem .8rem; overflow-x: auto; font-size: .8rem; line-height: 1.35; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.error { border-left: 4px solid #cf222e; padding-left: .8rem; }
"""


# --------------------------------------------------------------------------- sections


class _ReadOnce(RunStore):
    """A RunStore that reads each stored table once and hands every reporter its own
    copy (pandas copies are cheap and copy-on-write; a reporter that modifies its frame
    cannot change what the next one sees)."""

    def __init__(self, path):
        super().__init__(path)
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, read):
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]

    def record(self):
        return copy.deepcopy(self._once("record", super().record))

    @property
    def results(self):
        return self._once("results", lambda: RunStore.results.fget(self)).copy()

    @property
    def metrics(self):
        return self._once("metrics", lambda: RunStore.metrics.fget(self)).copy()

    @property
    def histories(self):
        return self._once("histories", lambda: RunStore.histories.fget(self)).copy()

    def cell_metrics(self):
        return self._once("cell_metrics", super().cell_metrics).copy()

    def first_layers(self):
        cached = self._once("first_layers", super().first_layers)
        return {key: array.copy() for key, array in cached.items()}

    def artifacts(self):
        cached = self._once("artifacts", super().artifacts)
        return {key: {name: array.copy() for name, array in arrays.items()}
                for key, arrays in cached.items()}


def chosen_reporters(registry, record) -> list[str]:
    """The reporters whose sections a run's report holds, in name order: those named in
    the run's ``[report] reporters`` when it names any, else every registered reporter
    whose ``by_default`` is true (opt-in reporters are left out)."""
    names = registry.names("reporter")
    chosen = ((record.experiment.config or {}).get("report") or {}).get("reporters")
    if chosen is not None:
        return [name for name in names if name in set(chosen)]
    return [name for name in names
            if getattr(registry.get("reporter", name), "by_default", True)]


def collect_sections(run: RunStore, registry=None,
                     errors: dict[str, str] | None = None) -> list[ReportSection]:
    """Sections of the chosen reporters (:func:`chosen_reporters`) for ``run``, sorted
    by ``order``.

    Reporters run in name order; sections of equal ``order`` keep that order. A
    reporter that raises contributes one section with its error and traceback instead
    (and its traceback to ``errors``, by reporter name, when given). Stored tables are
    read once for all reporters.
    """
    registry = _registry(registry)
    run = _ReadOnce(run.path)
    sections: list[ReportSection] = []
    for name in chosen_reporters(registry, run.record()):
        try:
            reporter = registry.get("reporter", name)()
            sections.extend(reporter.sections(run) or [])
        except Exception as err:  # a broken reporter never stops the others
            sections.append(_error_section(name, err))
            if errors is not None:
                errors[name] = "".join(traceback.format_exception(err))
    return sorted(sections, key=lambda s: s.order)


def collect_comparison_sections(runs: Mapping[str, RunStore],
                                registry=None) -> list[ReportSection]:
    """Sections of every registered reporter's ``compare(runs)``.

    ``runs`` maps a short label per run to its store, in the order given by the user
    (deltas are taken against the first). Reporters that do not override ``compare``
    contribute nothing.
    """
    registry = _registry(registry)
    runs = {label: _ReadOnce(run.path) for label, run in runs.items()}
    sections: list[ReportSection] = []
    for name in registry.names("reporter"):
        try:
            sections.extend(registry.get("reporter", name)().compare(runs) or [])
        except Exception as err:  # a broken reporter never stops the others
            sections.append(_error_section(name, err))
    return sorted(sections, key=lambda s: s.order)


def _registry(registry):
    if registry is not None:
        return registry
    from .plugins import get_registry

    return get_registry()


def _error_section(name: str, err: BaseException) -> ReportSection:
    trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", trace)), default=0))
    text = (f"The reporter `{name}` raised an error, so its part of the report is missing; "
            f"the other sections are complete.\n\n{fence}\n{trace.rstrip()}\n{fence}")
    return ReportSection(title=f"Reporter {name!r} failed", text=text, order=0)


# ---------------------------------------------------------------------------- entry points


def render_report(run_dir, *, registry=None, formats: Sequence[str] = REPORT_FORMATS,
                  errors: dict[str, str] | None = None) -> dict[str, Path]:
    """Render ``RUN_DIR/report.html`` and/or ``RUN_DIR/report.md`` from the stored run.

    ``formats`` is any of ``"html"`` and ``"md"``; the Markdown report's figures are
    written to ``RUN_DIR/figures/``. Reporters that raised are added to ``errors`` (see
    :func:`collect_sections`). Returns ``{format: path}``.
    """
    _check_formats(formats)
    run = RunStore(run_dir)
    record = run.record()
    title = f"robench report: {record.experiment.name or run.path.name}"
    facts = [f"status **{escape_markdown(record.status or 'unknown')}**"]
    if record.experiment.config_hash:
        facts.append(f"config {escape_markdown(str(record.experiment.config_hash)[:12])}")
    if record.finished:
        facts.append(f"finished {escape_markdown(record.finished)}")
    if record.robench_version:
        facts.append(f"robench {escape_markdown(record.robench_version)}")
    sections = collect_sections(run, registry, errors)
    return write_report(run.path, title, " · ".join(facts), sections, formats=formats)


def render_comparison(run_dirs: Iterable, out_dir, *, registry=None,
                      formats: Sequence[str] = REPORT_FORMATS) -> dict[str, Path]:
    """Render a report comparing several runs into ``out_dir`` (``robench compare``).

    Each run gets a short label (its directory name, made unique); reporters with a
    ``compare`` method add the per-run values and their deltas against the first run.
    Returns ``{format: path}``.
    """
    _check_formats(formats)
    runs = run_labels(run_dirs)
    for label, run in runs.items():
        run.record()  # fails early, naming the directory, when run.json is missing
    title = "robench comparison: " + " vs ".join(runs)
    subtitle = "Deltas are taken against the first run, **" + \
        escape_markdown(next(iter(runs))) + "**" if len(runs) > 1 else "a single run"
    sections = collect_comparison_sections(runs, registry)
    return write_report(Path(out_dir), title, subtitle, sections, formats=formats)


def run_labels(run_dirs: Iterable) -> dict[str, RunStore]:
    """``{label: RunStore}`` with each run's directory name, suffixed ``#2``... when two
    runs share a name."""
    runs: dict[str, RunStore] = {}
    for run_dir in run_dirs:
        store = RunStore(run_dir)
        base = store.path.resolve().name or str(run_dir)
        label, n = base, 1
        while label in runs:
            n += 1
            label = f"{base}#{n}"
        runs[label] = store
    if not runs:
        raise ValueError("render_comparison needs at least one run directory")
    return runs


# ---------------------------------------------------------------------------- writing


def write_report(out_dir: Path, title: str, subtitle: str, sections: list[ReportSection],
                 *, formats: Sequence[str] = REPORT_FORMATS) -> dict[str, Path]:
    """Write ``report.html`` / ``report.md`` (+ ``figures/``) for ``sections`` into
    ``out_dir``. Figures are closed after saving."""
    from .results import atomic_write_bytes

    _check_formats(formats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slugs = _unique_slugs([s.title for s in sections])
    pngs = [[_figure_png(fig) for fig in s.figures] for s in sections]
    written: dict[str, Path] = {}
    if "html" in formats:
        path = out_dir / "report.html"
        atomic_write_bytes(path, _html(title, subtitle, sections, slugs, pngs).encode())
        written["html"] = path
    if "md" in formats:
        fig_dir = out_dir / "figures"
        fig_dir.mkdir(exist_ok=True)
        for stale in fig_dir.glob("*.png"):
            stale.unlink()
        names = [[f"{i + 1:02d}-{slug}-{j + 1}.png" for j in range(len(p))]
                 for i, (slug, p) in enumerate(zip(slugs, pngs))]
        for section_names, section_pngs in zip(names, pngs):
            for name, data in zip(section_names, section_pngs):
                atomic_write_bytes(fig_dir / name, data)
                os.chmod(fig_dir / name, 0o644)
        path = out_dir / "report.md"
        atomic_write_bytes(path, _markdown(title, subtitle, sections, names).encode())
        written["md"] = path
    for path in written.values():  # temporary files are private; reports are for reading
        os.chmod(path, 0o644)
    return written


def _check_formats(formats: Sequence[str]) -> None:
    unknown = set(formats) - set(REPORT_FORMATS)
    if unknown:
        raise ValueError(f"unknown report format(s) {sorted(unknown)}; "
                         f"choose from {list(REPORT_FORMATS)}")


def _figure_png(fig) -> bytes:
    """PNG bytes of a matplotlib figure, reduced to a 256-colour palette (plots have few
    colours; files shrink about four-fold) and without metadata, so the bytes are
    reproducible."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    buf.seek(0)
    with Image.open(buf) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                                dither=Image.Dither.NONE)
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    import matplotlib.pyplot as plt

    plt.close(fig)  # releases figures a reporter made through pyplot; no-op otherwise
    return buf.getvalue()


def _caption(fig) -> str:
    label = fig.get_label() if hasattr(fig, "get_label") else ""
    return label or ""


def _unique_slugs(titles: list[str]) -> list[str]:
    slugs, seen = [], set()
    for title in titles:
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48] or "section"
        slug, n = base, 1
        while slug in seen:
            n += 1
            slug = f"{base}-{n}"
        seen.add(slug)
        slugs.append(slug)
    return slugs


# ------------------------------------------------------------------------------ cells


def _cell_text(value: Any) -> str:
    """A table value as text: floats with 4 significant digits, missing values empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return ""
    except ImportError:  # pragma: no cover
        pass
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return _cell_text(value.item())
    return str(value)


def _table_rows(frame) -> tuple[list[str], list[list[str]]]:
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    columns = [" ".join(str(c) for c in col if str(c)) if isinstance(col, tuple) else str(col)
               for col in frame.columns]
    rows = [[_cell_text(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return columns, rows


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_|]|\](?=[(\[:]))")

SAFE_SCHEMES = ("http", "https")
"""URL schemes a report may link to; every other scheme (``javascript:``, ``data:``,
``file:``...) is dropped, and relative URLs (no scheme) are kept."""


def escape_markdown(text: str) -> str:
    """``text`` (a value from a run: a label, a file name, an error message) as Markdown
    that renders literally within a line (table cells, titles, captions, sentences):
    ``&``, ``<`` and ``>`` as HTML entities (no raw HTML, no entity of the value's own),
    the characters of emphasis, code and table cells backslash-escaped, and every ``]``
    that could close a link's text (before ``(``, ``[`` or ``:``); line breaks and tabs
    turned into spaces. Reporters pass every
    value that is not their own wording through it."""
    one_line = re.sub(r"[\r\n\t\v\f]+", " ", str(text))
    entities = one_line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", entities)


def safe_url(url: str) -> bool:
    """Whether a report may link to ``url``: http(s), or relative (no scheme)."""
    cleaned = re.sub(r"[\x00-\x20\x7f]+", "", html.unescape(url or ""))
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):", cleaned)
    return scheme is None or scheme.group(1).lower() in SAFE_SCHEMES


_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _html_cell(text: str) -> str:
    """Escape a cell and keep its ``**bold**`` marks (the best-value marker)."""
    return _BOLD.sub(r"<strong>\1</strong>", html.escape(text)).replace("\n", "<br>")


def _md_cell(text: str) -> str:
    """A table cell as Markdown: escaped as :func:`escape_markdown`, keeping its
    ``**bold**`` marks (the best-value marker)."""
    parts = _BOLD.split(text)
    return "".join(f"**{escape_markdown(part)}**" if i % 2 else escape_markdown(part)
                   for i, part in enumerate(parts))


# ------------------------------------------------------------------------------- html


def _markdown_to_html(text: str) -> str:
    """Markdown -> HTML without raw HTML or images (escaped as text instead), and with
    links only to http(s) and relative URLs (any other link is shown as its text)."""
    import markdown
    from markdown.treeprocessors import Treeprocessor

    class SafeLinks(Treeprocessor):
        def run(self, root):
            for element in root.iter("a"):
                if not safe_url(element.get("href", "")):
                    element.tag = "span"
                    element.attrib.clear()

    md = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists"],
                           output_format="html")
    md.preprocessors.deregister("html_block")
    for pattern in ("html", "image_link", "image_reference", "short_image_ref"):
        if pattern in md.inlinePatterns:
            md.inlinePatterns.deregister(pattern)
    md.treeprocessors.register(SafeLinks(md), "safe_links", 0)
    return md.convert(text)


_NUMBER = re.compile(r"^\**([-+−]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?%?|[-−]?∞|[-+]?inf)"
                     r"( ± [\d.e+-]+)?\**$")


def _numeric_columns(rows: list[list[str]], n: int) -> list[bool]:
    """Columns whose every non-empty cell reads as a number (right-aligned)."""
    return [all(not row[i] or _NUMBER.match(row[i]) for row in rows) for i in range(n)]


def _html_table(frame) -> str:
    columns, rows = _table_rows(frame)
    numeric = _numeric_columns(rows, len(columns))
    caption = frame.attrs.get("title", "")
    parts = ['<div class="table-wrap"><table>']
    if caption:
        parts.append(f"<caption>{html.escape(str(caption))}</caption>")
    attrs = [' class="num"' if num else "" for num in numeric]
    parts.append("<thead><tr>" + "".join(f"<th{a}>{html.escape(c)}</th>"
                                         for c, a in zip(columns, attrs))
                 + "</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td{a}>{_html_cell(v)}</td>"
                                      for v, a in zip(row, attrs)) + "</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


def _html(title: str, subtitle: str, sections: list[ReportSection], slugs: list[str],
          pngs: list[list[bytes]]) -> str:
    toc = "".join(f'<li><a href="#{slug}">{html.escape(s.title)}</a></li>'
                  for s, slug in zip(sections, slugs))
    body = []
    for section, slug, images in zip(sections, slugs, pngs):
        cls = ' class="error"' if section.order == 0 and "failed" in section.title else ""
        body.append(f'<section id="{slug}"{cls}><h2>{html.escape(section.title)}</h2>')
        if section.text:
            body.append(_markdown_to_html(section.text))
        for frame in section.tables:
            body.append(_html_table(frame))
        for fig, data in zip(section.figures, images):
            caption = _caption(fig)
            alt = html.escape(caption or section.title, quote=True)
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
            body.append(f'<figure><img src="{uri}" alt="{alt}">{cap}</figure>')
        body.append("</section>")
    if not sections:
        body.append("<p>No reporter produced a section for this run.</p>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f"<p class=\"subtitle\">{_markdown_inline(subtitle)}</p>\n"
        + (f'<nav class="toc"><strong>Contents</strong><ol>{toc}</ol></nav>\n' if toc else "")
        + "\n".join(body) + "\n</body></html>\n"
    )


def _markdown_inline(text: str) -> str:
    converted = _markdown_to_html(text).strip()
    return re.sub(r"^<p>(.*)</p>$", r"\1", converted, flags=re.S)


# --------------------------------------------------------------------------- markdown


def _md_table(frame) -> str:
    columns, rows = _table_rows(frame)
    lines = []
    caption = frame.attrs.get("title", "")
    if caption:
        lines += [f"*{escape_markdown(caption)}*", ""]
    lines.append("| " + " | ".join(_md_cell(c) for c in columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(title: str, subtitle: str, sections: list[ReportSection],
              names: list[list[str]]) -> str:
    out = [f"# {escape_markdown(title)}", "", subtitle, ""]
    for section, section_names in zip(sections, names):
        out += [f"## {escape_markdown(section.title)}", ""]
        if section.text:
            out += [section.text.rstrip(), ""]
        for frame in section.tables:
            out += [_md_table(frame), ""]
        for fig, name in zip(section.figures, section_names):
            caption = escape_markdown(_caption(fig) or section.title)
            out += [f"![{caption}](figures/{name})", ""]
    if not sections:
        out += ["No reporter produced a section for this run.", ""]
    return "\n".join(out)
