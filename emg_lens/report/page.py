"""``report.html``: one self-contained page per output folder, to open in a browser or print.

`write_report` reads what a study, a discovery or an inspection wrote into a folder and writes
``report.html`` beside it (what it holds: docs/guide/reports.md, "One report per run"; why it
is safe to send: `emg_lens.report`). The folder's ``outputs.json`` orders its figures and
tables; without one they are shown in name order."""

from __future__ import annotations

import base64
import datetime as _datetime
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emg_lens._io import remove_orphaned_temp_files, write_if_changed
from emg_lens._version import __version__
from emg_lens.errors import ArgumentError, DataFormatError, MissingDependencyError, checked
from emg_lens.report.folder import FolderFiles, LeftOut, csv_head
from emg_lens.report.markdown import table_html, to_html
from emg_lens.report.view import VIEW_DATA, view_html, view_problem
from emg_lens.stats import P_FLOOR, format_p

REPORT = "report.html"
"""The page's file name, in the folder it reports."""
MANIFEST = "outputs.json"
"""The output manifest's file name: what a command wrote into the folder (`write_manifest`)."""
VIEW = "attention_view.html"
MAX_ROWS = 2000  # rows of one table shown on the page (the CSV has them all)
MAX_CELL = 300  # characters of one table cell shown on the page
# How `report` says where else to write: it writes into the folder it reports.
ELSEWHERE = "copy the folder to {where} and run emg-lens report on the copy"

_STYLE = """
:root { --fg: #1d232b; --muted: #5b6470; --line: #d9dee5; --band: #f4f6f9; --accent: #2f5d9e; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1180px; padding: 24px 28px 60px; }
header h1 { font-size: 1.7em; margin: 0 0 4px; }
.meta { color: var(--muted); margin: 0; }
nav { position: sticky; top: 0; background: white; border-bottom: 1px solid var(--line);
      padding: 8px 0; margin: 14px 0 8px; z-index: 2; }
nav a { color: var(--accent); text-decoration: none; margin-right: 16px; font-weight: 600; }
h2 { font-size: 1.3em; border-bottom: 2px solid var(--line); padding-bottom: 4px;
     margin-top: 34px; }
h3 { font-size: 1.1em; margin-top: 22px; }
table { border-collapse: collapse; margin: 10px 0 16px; font-size: 12.5px;
        font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 9px; text-align: left; }
th { background: var(--band); cursor: pointer; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--muted); }
th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--muted); }
td.num { text-align: right; }
tbody tr:nth-child(even) { background: #fafbfc; }
.scroll { max-width: 100%; overflow-x: auto; }
figure { margin: 18px 0 26px; break-inside: avoid; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
details { margin: 8px 0; border: 1px solid var(--line); border-radius: 4px; padding: 6px 10px; }
summary { cursor: pointer; font-weight: 600; }
pre { background: var(--band); padding: 10px 12px; overflow-x: auto; font-size: 12px; }
code { background: var(--band); padding: 0 3px; border-radius: 3px; }
.view { border: 1px solid var(--line); width: 100%; height: 640px; resize: vertical; }
.left-out li { color: #8a3b12; }
@media print {
  nav { display: none; }
  body { max-width: none; padding: 0; font-size: 11px; }
  details { border: none; padding: 0; }
  h2 { break-after: avoid; }
  table, figure { break-inside: avoid; }
  .view { display: none; }
}
"""

# Sorting by a click on a header (numbers as numbers), and every fold opened for printing.
_SCRIPT = """
function cellValue(row, i) {
  const text = row.cells[i] ? row.cells[i].textContent.trim() : "";
  const number = parseFloat(text.replace("\\u2212", "-"));
  return Number.isNaN(number) ? text.toLowerCase() : number;
}
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("th").forEach((th, i) => {
    th.addEventListener("click", () => {
      const up = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellValue(a, i), y = cellValue(b, i);
        if (typeof x === typeof y) { return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); }
        return typeof x === "number" ? -1 : 1;
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
});
window.addEventListener("beforeprint", () => {
  document.querySelectorAll("details").forEach((d) => { d.open = true; });
});
// A sandboxed view says how tall it is: its frame takes that height, within bounds.
window.addEventListener("message", (event) => {
  document.querySelectorAll("iframe.view").forEach((frame) => {
    const height = event.data && event.data.emgLensViewHeight;
    if (event.source === frame.contentWindow && Number.isFinite(height)) {
      frame.style.height = Math.min(Math.max(Math.ceil(height) + 4, 120), 4000) + "px";
    }
  });
});
"""

# The head of a view's frame: nothing is fetched from it either (its script and style inline).
_VIEW_HEAD = (
    '<meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src '
    "'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; font-src "
    'data:">'
)

# Added after a view, inside its frame: its height, sent to the page (a number, nothing else).
_VIEW_HEIGHT = """<script>
const emgLensSend = () => parent.postMessage(  // the content's height, not the frame's
  { emgLensViewHeight: document.documentElement.getBoundingClientRect().height }, "*");
new ResizeObserver(emgLensSend).observe(document.documentElement);
window.addEventListener("load", emgLensSend);
</script>"""


@checked
def write_manifest(
    folder: str | Path,
    *,
    kind: str,
    title: str,
    spec: dict[str, Any] | None,
    tables: list[str],
    figures: list[str],
) -> Path:
    """Write ``outputs.json``: what the folder holds, in the order a reader should see it
    (the spec, the tables, the figures by name), for `write_report`."""
    path = Path(folder) / MANIFEST
    record = {"kind": kind, "title": title, "spec": spec, "tables": tables, "figures": figures}
    write_if_changed(path, json.dumps(record, indent=2, default=str) + "\n")
    return path


def _manifest(files: FolderFiles) -> dict[str, Any]:
    """The folder's manifest, or one read off its files (and ``study.json``) when it has
    none or one that is not a manifest (left out, with why)."""
    as_it_is = "; the folder is read as it is"
    record = files.json(MANIFEST, then=as_it_is)
    if record is not None:
        why = _manifest_problem(record)
        if why is None:
            return record
        files.leave_out(MANIFEST, why + as_it_is)
    spec = _study_spec(files)
    return {
        "kind": spec.get("kind", "study") if spec else "outputs",
        "title": spec.get("name", files.folder.name) if spec else files.folder.name,
        "spec": spec,
        "tables": sorted(p.name for p in files.folder.glob("*.csv")),
        "figures": sorted(p.stem for p in files.folder.glob("*.png")),
    }


def _manifest_problem(record: Any) -> str | None:
    """Why ``record`` is not what `write_manifest` writes, in words; None if it is."""
    if not isinstance(record, dict):
        kind = type(record).__name__
        return f"a JSON {kind} where a table of kind, title, spec, tables and figures is expected"
    for key in ("kind", "title"):
        if not isinstance(record.get(key, ""), str | None):
            return f"{key!r} must be a string, got {record[key]!r}"
    if not isinstance(record.get("spec"), dict | None):
        return f"'spec' must be a table or null, got {record['spec']!r}"
    for key in ("tables", "figures"):
        names = record.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return f"{key!r} must be a list of file names, got {names!r}"
    return None


def _study_spec(files: FolderFiles) -> dict[str, Any] | None:
    """The study spec that ``study.json`` records (its fingerprint), or None."""
    marker = files.json("study.json")
    if marker is None:
        return None
    try:
        spec = json.loads(marker["fingerprint"])
    except (TypeError, KeyError, ValueError):
        spec = None
    if not isinstance(spec, dict):
        files.leave_out(
            "study.json", "not a study marker (a table whose 'fingerprint' is a study as JSON)"
        )
        return None
    return spec


def _csv_table(files: FolderFiles, name: str) -> str | None:
    """The CSV file ``name`` behind a fold, as a sortable table of at most `MAX_ROWS` rows
    (the rest counted, not read), or None (missing or left out)."""
    path = files.path(name)
    if path is None:
        return None
    try:
        rows, n = csv_head(path, MAX_ROWS)
    except DataFormatError as exc:
        files.leave_out(name, str(exc))
        return None
    if rows:
        p_columns = {i for i, h in enumerate(rows[0]) if _is_p_column(h)}
        shown = [[_short(v, i in p_columns) for i, v in enumerate(row)] for row in rows[1:]]
        table = table_html([_short(h) for h in rows[0]], shown)
    else:
        table = "<p>(empty)</p>"
    note = (
        f"<p class='meta'>The first {MAX_ROWS} of {n} rows; {html.escape(path.name)} has them "
        "all.</p>"
        if n > MAX_ROWS
        else ""
    )
    return f"<details><summary>{html.escape(name)} ({n} rows)</summary>{table}{note}</details>"


def _is_p_column(name: str) -> bool:
    """A column of p-values, as emg_lens names them: ``p``, ``p_corr``, ``window_p``, ...

    >>> [_is_p_column(n) for n in ("p", "p_corrected", "window_p", "pooled", "top")]
    [True, True, True, False, False]
    """
    return name == "p" or name.startswith("p_") or name.endswith("_p")


def _short(value: str, p_value: bool = False) -> str:
    """A long float printed to 4 significant digits, a long text cut to `MAX_CELL`
    characters (the CSV keeps every digit and character); in a p-value column, a p below
    `P_FLOOR` (``0.0`` where it underflowed) as ``< 1e-16``.

    >>> _short("0.0", p_value=True), _short("0.0"), _short("0.123456789")
    ('< 1e-16', '0.0', '0.1235')
    """
    if len(value) > MAX_CELL:
        return f"{value[:MAX_CELL]}… ({len(value)} characters)"
    try:
        number = float(value)
    except ValueError:
        return value
    if p_value and 0 <= number < P_FLOOR:
        return format_p(number)  # the bound, as every table prints it
    if "." not in value or len(value) < 8 or number != number:  # ints, short numbers, NaN
        return value
    return format_p(number, 4) if p_value else f"{number:.4g}"  # never onto a star threshold


def _figure(files: FolderFiles, name: str) -> str:
    png = files.data(f"{name}.png")
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    caption = html.escape(name.replace("_", " "))
    return (
        f'<figure id="figure-{html.escape(name)}"><img alt="{caption}" '
        f'src="data:image/png;base64,{data}"><figcaption>{caption} '
        f"({html.escape(name)}.png, .svg)</figcaption></figure>"
    )


def _digest(value: Any) -> str:
    """A digest shortened to its first 16 characters (each cell's JSON has it whole)."""
    text = "" if value is None else str(value)
    return text if len(text) <= 20 else f"{text[:16]}…"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value), ensure_ascii=False)


@checked
def spec_toml(spec: dict[str, Any]) -> str:
    """A study spec as the TOML a study file says it in: keys, then [tables], then
    [[arrays of tables]].

    >>> print(spec_toml({"name": "t", "layers": {"modes": ["all"]},
    ...                  "interventions": [{"name": "cross", "edges": "cross_modal"}]}))
    name = "t"
    <BLANKLINE>
    [layers]
    modes = ["all"]
    <BLANKLINE>
    [[interventions]]
    name = "cross"
    edges = "cross_modal"
    """
    plain = {k: v for k, v in spec.items() if not isinstance(v, dict) and not _tables(v)}
    lines = [f"{k} = {_toml_value(v)}" for k, v in plain.items() if v is not None]
    for key, value in spec.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]", *(f"{k} = {_toml_value(v)}" for k, v in value.items())]
    for key, value in spec.items():
        if _tables(value):
            for item in value:
                lines += ["", f"[[{key}]]", *(f"{k} = {_toml_value(v)}" for k, v in item.items())]
    return "\n".join(lines)


def _tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _provenance(files: FolderFiles) -> str:
    """Each subject's model and data digests, the code digest and the emg_lens version, from
    the provenance the cell store keeps with every cell."""
    rows: dict[str, dict[str, str]] = {}
    codes = set()
    for cell in sorted((files.folder / "cells").glob("s*/*.json")):
        path = files.path(cell.relative_to(files.folder).as_posix())
        try:
            record = json.loads(path.read_text(encoding="utf-8")) if path else None
        except (OSError, ValueError):
            continue  # a torn cell: the store recomputes it; nothing to report
        provenance = (record.get("provenance") if isinstance(record, dict) else None) or {}
        if not isinstance(provenance, dict):
            continue
        subject = cell.parent.name.removeprefix("s")
        if provenance and subject not in rows:
            rows[subject] = {
                "subject": subject,
                "model": _digest(provenance.get("model")),
                "data": _digest(provenance.get("data")),
                "scored output": str(provenance.get("return_type", "")),
            }
        if provenance.get("code"):
            codes.add(str(provenance["code"]))
    lines = [f"<p>Report written by emg_lens {html.escape(__version__)}.</p>"]
    if codes:
        shown = ", ".join(f"<code>{html.escape(c)}</code>" for c in sorted(codes))
        lines.append(f"<p>Cells computed by emg_lens code (version + SHA-256 digest): {shown}.</p>")
    if rows:
        ordered = sorted(rows.values(), key=lambda r: (len(r["subject"]), r["subject"]))
        header = list(ordered[0])
        lines.append(table_html(header, [[r[h] for h in header] for r in ordered]))
        lines.append(
            "<p class='meta'>model: SHA-256 of the checkpoint's weights and config; data: of "
            "the evaluation data's source files (or arrays); a stored cell is reused only "
            "while both, the scored output and the code are unchanged.</p>"
        )
    else:
        lines.append("<p>The folder's cells record no per-subject provenance.</p>")
    return "\n".join(lines)


def _view(files: FolderFiles) -> str | None:
    """The attention view section, rebuilt from the folder's ``attention_view.json``
    (`emg_lens.report.view`); a folder's ``attention_view.html`` is left out, never embedded."""
    if files.path(VIEW) is not None:
        files.leave_out(
            VIEW,
            "a page the folder holds is never embedded (its script could send the reader's "
            f"browser elsewhere); the view is rebuilt from {VIEW_DATA}, which emg-lens inspect "
            "writes",
        )
    record = files.json(VIEW_DATA)
    if record is None:
        return None
    problem = view_problem(record)
    if problem is not None:
        files.leave_out(VIEW_DATA, f"not an attention view emg_lens writes: {problem}")
        return None
    note = (
        "<p>Every head's attention in one layer for one window, tokens named by their "
        "channels (CircuitsVis; hover a token). The view runs in a frame of its own.</p>"
    )
    try:
        return note + sandboxed(view_html(record))
    except MissingDependencyError:
        return (
            "<p>The folder holds an attention view; circuitsvis draws it: pip install "
            "circuitsvis.</p>"
        )


def sandboxed(view: str) -> str:
    """A library's view (its script and emg_lens's escaped data), in a frame of its own: a
    ``srcdoc`` (escaped for the attribute) that may run its script (``allow-scripts``) but,
    with no same origin, cannot read or change the page around it.

    >>> sandboxed("<b onclick='x()'>hi</b>")[:80]
    '<iframe class="view" title="attention view" sandbox="allow-scripts" srcdoc="&lt;'
    """
    document = f"<!doctype html><html><head>{_VIEW_HEAD}</head><body>{view}"
    document += f"{_VIEW_HEIGHT}</body></html>"
    return (
        '<iframe class="view" title="attention view" sandbox="allow-scripts" '
        f'srcdoc="{html.escape(document, quote=True)}"></iframe>'
    )


def _left_out(entries: list[LeftOut]) -> str:
    items = []
    for entry in entries:
        name, why = (html.escape(text, quote=False) for text in entry)
        items.append(f"<li><code>{name}</code>: {why}</li>")
    return (
        "<p>Files the folder names or holds that this page does not show:</p>"
        f'<ul class="left-out">{"".join(items)}</ul>'
    )


TRUST = (
    "How often each verdict and interval errs on designs whose truth is known: emg_lens's "
    "manual, How far each number can be trusted (docs/trust.md)."
)
"""The line every page carries under its title: where the verdicts' error rates are."""


@checked
def report_html(folder: str | Path) -> str:
    """The page for an output folder (see the module docstring)."""
    return _page(folder)[0]


def _page(folder: str | Path) -> tuple[str, list[LeftOut]]:
    """The page, and the files it leaves out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArgumentError(f"{folder}: no such folder; give the output folder of a study run")
    files = FolderFiles(folder)
    manifest = _manifest(files)
    title = str(manifest.get("title") or folder.name)
    kind = str(manifest.get("kind") or "outputs")
    sections: list[tuple[str, str, str]] = []  # (id, heading, html)
    summary = files.text("summary.md")
    if summary is not None:
        sections.append(("summary", "Summary", to_html(summary, skip_title=title)))
    figures = [shown for f in manifest.get("figures", []) if (shown := _figure(files, f))]
    if figures:
        sections.append(("figures", "Figures", "\n".join(figures)))
    view = _view(files)
    if view is not None:
        sections.append(("view", "Attention view", view))
    spec = manifest.get("spec")
    if spec:
        text = html.escape(spec_toml(spec), quote=False)
        note = "<p class='meta'>The study as a study file says it (TOML).</p>"
        sections.append(("spec", "Study", f"{note}<pre>{text}</pre>"))
    tables = [table for t in manifest.get("tables", []) if (table := _csv_table(files, t))]
    if tables:
        sections.append(("tables", "Tables", "\n".join(tables)))
    if (folder / "cells").is_dir():
        sections.append(("provenance", "Provenance", _provenance(files)))
    if files.left_out:
        sections.insert(0, ("left-out", "Left out", _left_out(files.left_out)))
    nav = "".join(f'<a href="#{sid}">{html.escape(head)}</a>' for sid, head, _ in sections)
    body = "\n".join(
        f'<section id="{sid}"><h2>{html.escape(head)}</h2>\n{content}\n</section>'
        for sid, head, content in sections
    )
    written = (p.lstat().st_mtime for p in folder.iterdir() if not p.name.startswith(REPORT))
    stamp = _datetime.datetime.fromtimestamp(
        max(written, default=0), _datetime.timezone.utc
    ).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · emg_lens</title><style>{_STYLE}</style></head>\n<body>"
        f'<header><h1>{html.escape(title)}</h1><p class="meta">emg_lens {html.escape(kind)}'
        f" · outputs of {stamp} · {html.escape(str(folder.resolve()))}</p>"
        f'<p class="meta">{TRUST}</p></header>'
        f"<nav>{nav}</nav>\n{body}\n<script>{_SCRIPT}</script></body></html>\n"
    )
    return page, files.left_out


@checked
def write_report(folder: str | Path, *, warn: Callable[[str], None] | None = None) -> Path:
    """Write ``report.html`` into ``folder`` (only when its bytes change) and return its
    path; ``warn`` is told of each file left out. The temporary files of report writers
    that were killed (``report.html.<pid>.tmp``, the pid no longer alive) are removed.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "summary.md").write_text("# t\\n\\n| a |\\n|---|\\n| 1 |")
    >>> page = write_report(folder).read_text()
    >>> "<table" in page and "http" not in page.split("<body>")[1]
    True
    """
    path = Path(folder) / REPORT
    page, left_out = _page(folder)
    for entry in left_out:
        if warn is not None:
            warn(f"left out of {path}: {entry.name}: {entry.why}")
    remove_orphaned_temp_files(path.parent, of=REPORT)
    write_if_changed(path, page, elsewhere=ELSEWHERE)
    return path
