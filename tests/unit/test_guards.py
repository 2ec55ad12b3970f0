"""tools/guards.py (issue 87): its counts of code lines, guard lines, raise sites, check helpers
and exception classes, checked exactly on a tiny package written here."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "guards.py"

ERRORS = '''"""The package's errors:
a two-line docstring."""


class BaseError(Exception):
    """Not code."""


class BadError(BaseError):
    pass


class Other(ValueError):
    pass


class Plain:
    pass


def check_int(value, what):
    if not isinstance(value, int):
        raise BadError(what)
    return value


def _check_positive(value):
    return check_int(value, "value")


def checkpoint(value):
    return value


SHOWN = (BadError, Other)
'''
# code lines: classes 1 + 3 * 2 (BaseError's docstring is none), check_int 4, _check_positive 2,
# checkpoint 2, SHOWN 1 = 16
# guard lines: the if and its raise (2), check_int's call in _check_positive (1) = 3

USE = '''from pkg.errors import BadError, Other, _check_positive, check_int


def f(x):
    """Doc."""
    # a comment
    if x < 0:
        raise BadError(
            "x must be >= 0"
        )
    n = check_int(x, "x")
    if x > 5:
        x = 5
        raise Other("big")
    _check_positive(n)
    try:
        return n
    except (BadError, KeyError):
        return checkpoint(0)
    raise


def g(y):
    why = f"y is {y}"
    if y:
        raise Other(why)
    kept = 1
    if not y:
        print(kept)
        raise Other("no")
    what = "y, a count"
    check_int(y, what)
    return kept
'''
# code lines: 16 in f (all but the docstring, the comment and the blank lines), 11 in g = 27
# guard lines in f: the if of 4 lines, the check_int call, the if of x > 5 (its body only
# assigns, then raises: 3), the _check_positive call, the bare raise = 4 + 1 + 3 + 1 + 1 = 10;
# in g: the message built apart and its if (3), the last if's 3 lines (kept is read after it,
# so its assignment is not the guard's), the check_int call and its message built apart (2) = 8


def test_counts_of_a_tiny_package(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text(ERRORS)
    (pkg / "use.py").write_text(USE)
    run = subprocess.run(
        [sys.executable, str(TOOL), str(pkg), "--json"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["modules"] == {  # raise_tails: BadError("x must be >= 0")'s two wrapped lines
        "__init__.py": {"code": 0, "guard": 0, "raises": 0, "raise_tails": 0},
        "errors.py": {"code": 16, "guard": 3, "raises": 1, "raise_tails": 0},
        "use.py": {"code": 27, "guard": 18, "raises": 5, "raise_tails": 2},
    }
    share = round(21 / 43, 4)
    assert got["total"] == {"code": 43, "guard": 21, "share": share, "raises": 6, "raise_tails": 2}
    assert got["helpers"] == ["_check_positive", "check_int"]
    assert got["classes"] == {
        "BaseError": {
            "module": "errors.py",
            "bases": ["Exception"],
            "raises": 0,
            "excepts": 0,
            "others": 0,
        },
        "BadError": {
            "module": "errors.py",
            "bases": ["BaseError"],
            "raises": 2,
            "excepts": 1,
            "others": 1,
        },
        "Other": {
            "module": "errors.py",
            "bases": ["ValueError"],
            "raises": 3,
            "excepts": 0,
            "others": 1,
        },
    }
    text = subprocess.run(
        [sys.executable, str(TOOL), str(pkg)], capture_output=True, text=True, check=True
    ).stdout
    assert "total: 21 guard lines of 43 code lines (48.8 %), 6 raise sites; 2 of" in text
    assert "3 exception classes" in text


def test_coverage_names_the_raise_sites_a_test_run_did_not_execute(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "errors.py").write_text(ERRORS)
    (pkg / "use.py").write_text(USE)
    raises = [n.lineno for n in ast.walk(ast.parse(USE)) if isinstance(n, ast.Raise)]
    report = tmp_path / "cov.json"  # coverage.py's JSON keys: paths as the run saw them
    executed = {"executed_lines": [raises[0], raises[2]], "missing_lines": []}
    report.write_text(json.dumps({"files": {"/elsewhere/pkg/use.py": executed}}))
    run = subprocess.run(
        [sys.executable, str(TOOL), str(pkg), "--coverage", str(report)],
        capture_output=True,
        text=True,
        check=True,
    )
    missed = [f"use.py:{line}" for line in sorted(set(raises) - {raises[0], raises[2]})]
    errors_raise = ERRORS.splitlines().index("        raise BadError(what)") + 1
    assert (  # errors.py is not in the report: its raise was not executed
        f"executed: 2 of 6; not: errors.py:{errors_raise}, {', '.join(sorted(missed))}"
        in run.stdout
    )


def test_emg_lens_defines_at_most_15_exception_classes():
    """Issue 87: a kind of bad input is a message of its family's class, not a class of its
    own (a class is kept where an ``except`` tells it apart, or a builtin base is its point).
    The tool's own finder on the parsed modules: its whole scan (the test above runs it) also
    tokenizes every line, 4 s of the fast tests for a count this needs none of."""
    spec = importlib.util.spec_from_file_location("guards", TOOL)
    guards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(guards)
    package = TOOL.parents[1] / "emg_lens"
    trees = {str(p): ast.parse(p.read_text()) for p in package.rglob("*.py")}
    classes = guards.exception_classes(trees)
    assert "EmgLensError" in classes and len(classes) <= 15, sorted(classes)
