"""``report.html``: one self-contained page per output folder (`page`), its summary rendered
from the folder's Markdown (`markdown`), from the regular files inside the folder only
(`folder`: anything else is listed as left out). No server, no network: figures are embedded,
the page's script and style are inline, a library's view runs in a sandboxed frame."""

from emg_lens.report.page import (
    MANIFEST,
    REPORT,
    report_html,
    spec_toml,
    write_manifest,
    write_report,
)

__all__ = ["MANIFEST", "REPORT", "report_html", "spec_toml", "write_manifest", "write_report"]
