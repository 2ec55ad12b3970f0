"""The interactive attention view of a report, rebuilt from the numbers emg_lens wrote
(``attention_view.json``, `view_record`): `view_html` builds the CircuitsVis view with the
installed library's script and the record as data, every character that could end the script
or open a tag escaped. A folder's HTML is never embedded: it could navigate its frame to a
remote address, and a report is something people send each other.

>>> record = view_record(["cls", "C3"], ["L0H0"], [[[1.0, 0.0], [0.5, 0.5]]])
>>> view_problem(record) is None
True
>>> "\\\\u003c/script" in view_html(view_record(["</script>", "C3"], ["L0H0"],
...                                           [[[1.0, 0.0], [0.5, 0.5]]]))
True
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from emg_lens.errors import ArgumentError, MissingDependencyError

VIEW_DATA = "attention_view.json"
MAX_TOKENS = 1024  # a view of more tokens than this is not one a person reads
MAX_HEADS = 128
MAX_NAME = 200  # characters of a token or head name

# Characters that end a script or open markup inside it, as JSON escapes (still valid JSON).
_SCRIPT_SAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                "\u2029": "\\u2029"}  # fmt: skip


def view_record(tokens: list[str], heads: list[str], attention: Any) -> dict[str, Any]:
    """What ``attention_view.json`` holds: ``tokens`` (one name per token), ``heads`` (one
    name per head) and ``attention`` (``[head][query][key]`` weights, rows summing to 1 or 0),
    checked as `view_problem` checks a record read back (an `ArgumentError` naming what is
    wrong)."""
    rows = attention.tolist() if hasattr(attention, "tolist") else attention
    record = {"tokens": list(tokens), "heads": list(heads), "attention": rows}
    problem = view_problem(record)
    if problem is not None:
        raise ArgumentError(f"attention view: {problem}")
    return record


def view_problem(record: Any) -> str | None:
    """Why ``record`` is not a view record `view_record` writes, in words; None if it is."""
    if not isinstance(record, dict) or set(record) != {"tokens", "heads", "attention"}:
        return "an object of exactly tokens, heads and attention is expected"
    tokens, heads, attention = record["tokens"], record["heads"], record["attention"]
    for key, names, most in (("tokens", tokens, MAX_TOKENS), ("heads", heads, MAX_HEADS)):
        if not isinstance(names, list) or not 1 <= len(names) <= most:
            return f"{key!r} must be a list of 1 to {most} names"
        if not all(isinstance(n, str) and len(n) <= MAX_NAME for n in names):
            return f"{key!r} must hold names of at most {MAX_NAME} characters"
    n = len(tokens)
    if not isinstance(attention, list) or len(attention) != len(heads):
        return f"'attention' must hold one [{n} x {n}] pattern per head ({len(heads)})"
    for pattern in attention:
        if not isinstance(pattern, list) or len(pattern) != n:
            return f"'attention' must hold one [{n} x {n}] pattern per head"
        for row in pattern:
            if not isinstance(row, list) or len(row) != n:
                return f"'attention' must hold one [{n} x {n}] pattern per head"
            if not all(_weight(w) for w in row):
                return "'attention' must hold weights: finite numbers in [0, 1]"
    return None


def _weight(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


def require_circuitsvis(what: str) -> Any:
    """The optional package circuitsvis (its ``attention`` views imported), or a
    `MissingDependencyError` saying that ``what`` needs it and how to install it.

    >>> require_circuitsvis("the attention view").attention.__name__
    'circuitsvis.attention'
    """
    try:
        import circuitsvis
        import circuitsvis.attention  # the submodule holding the views
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs circuitsvis: pip install circuitsvis (or '.[viz]' in the clone)",
            name="circuitsvis",
        ) from exc
    return circuitsvis


def _library_script() -> str:
    circuitsvis = require_circuitsvis("the attention view")
    script = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    # A closing tag inside the bundle would end the inline script (CircuitsVis drops it too).
    return script.read_text(encoding="utf-8").replace("</script>", "")


def view_html(record: dict[str, Any]) -> str:
    """The CircuitsVis view of a checked record (`view_problem`): the library's script inline
    and the record as escaped data, every head's pattern over the tokens (both directions: an
    encoder's attention is not causal), the strongest weight darkest. Needs circuitsvis."""
    problem = view_problem(record)
    if problem is not None:
        raise ArgumentError(f"attention view: {problem}")
    peak = max((max(row) for pattern in record["attention"] for row in pattern), default=1.0)
    props = {
        "attention": record["attention"],
        "tokens": record["tokens"],
        "attentionHeadNames": record["heads"],
        "maxValue": peak or 1.0,
        "minValue": 0.0,
        "maskUpperTri": False,
    }
    data = json.dumps(props)
    for char, escaped in _SCRIPT_SAFE.items():
        data = data.replace(char, escaped)
    return (
        '<div id="view" style="margin: 15px 0;"></div>\n'
        f'<script type="module">\n{_library_script()}\n'
        f'CircuitsVis.render("view", CircuitsVis.AttentionHeads, {data});\n</script>'
    )
