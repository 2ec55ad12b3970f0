"""Issue 74: no hand-written bool/int/number field check outside the one validator
(`emg_lens.errors`: ``check_int``, ``check_ints``, ``is_int``, ``check_number``, ``check_bool``,
``check_seed``, ``check_field_types``; `emg_lens._hints`: what an annotation accepts). A
number-type test (``isinstance(x, int)``, ``type(x) in (int, float)``) in an ``if`` that
raises, or in a name such an ``if`` tests, is one; a type dispatch that checks no field is
allowed by name below."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "emg_lens"  # the source read, not imported
VALIDATOR = {"errors.py", "_hints.py"}
NUMBER_TYPES = {
    "bool",
    "bool_",
    "int",
    "integer",
    "Integral",
    "float",
    "floating",
    "Real",
    "Number",
}
# the modules worth parsing: a number type inside isinstance( ... ), or a type( ... ) compared
MAY_TEST = re.compile(
    rf"isinstance\([\s\S]{{0,120}}?\b(?:{'|'.join(NUMBER_TYPES)})\b|\btype\([^()]*\)\s+i[sn]\b"
)

ALLOWED: dict[tuple[str, str], str] = {
    # (module, function): why its number-type test is no field check
    ("data/formats/_matlab.py", "check_signal"): (
        "a reader's own expected channel count, one int or a tuple of them: a dispatch on the "
        "caller's constant; the check is of the file's shape"
    ),
    ("hooks/erasure.py", "concept_codes"): (
        "a float label that is NaN is a missing value: a test of the data, not of a field"
    ),
    ("train/reuse.py", "_check"): (
        "a stored training history read back from a cache file: its ValueError means 'train "
        "again', never a user's input"
    ),
}


def _names_a_number_type(node: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id in NUMBER_TYPES)
        or (isinstance(n, ast.Attribute) and n.attr in NUMBER_TYPES)
        for n in ast.walk(node)
    )


def _tests_a_number_type(node: ast.AST) -> bool:
    """``isinstance(_, <a number type>)`` or ``type(_) in/is <number types>`` in ``node``."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and len(n.args) == 2:
            tested = [n.args[1]] if n.func.id == "isinstance" else []
        elif isinstance(n, ast.Compare) and isinstance(n.left, ast.Call):
            called = n.left.func
            tested = n.comparators if isinstance(called, ast.Name) and called.id == "type" else []
        else:
            tested = []
        if any(_names_a_number_type(t) for t in tested):
            return True
    return False


def _hand_checks(tree: ast.Module) -> list[tuple[str, int]]:
    """``(function, line)`` of each ``if`` that raises (in either branch) on a number-type
    test, its own or that of a name assigned in the same function."""
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        typed = {
            t.id
            for a in ast.walk(function)
            if isinstance(a, ast.Assign) and _tests_a_number_type(a.value)
            for t in a.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(function):
            if not isinstance(node, ast.If):
                continue
            uses = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
            branches = [*node.body, *node.orelse]  # if isinstance(x, int): ... else: raise
            raises = any(isinstance(n, ast.Raise) for s in branches for n in ast.walk(s))
            if raises and (_tests_a_number_type(node.test) or uses & typed):
                found.append((function.name, node.lineno))
    return found


def test_no_hand_written_number_check_outside_the_validator():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        source = path.read_text()
        if module in VALIDATOR or not MAY_TEST.search(source):
            continue
        for function, line in _hand_checks(ast.parse(source, str(path))):
            if (module, function) not in ALLOWED:
                found.append(f"emg_lens/{module}:{line} ({function})")
    assert not found, (
        "a bool/int/number check written by hand: use emg_lens.errors' check_int, check_ints, "
        f"is_int, check_number or check_bool instead (or allow a type dispatch here): {found}"
    )


def test_the_scan_finds_the_checks_it_forbids():
    source = """
def f(n, x):
    if not isinstance(n, int) or isinstance(n, bool):
        raise ValueError(n)
    ok = type(x) in (int, float) and x > 0
    if not ok:
        raise ValueError(x)
    if isinstance(x, str):
        raise ValueError(x)
    return n if isinstance(n, int) else 0
"""
    assert _hand_checks(ast.parse(source)) == [("f", 3), ("f", 6)]
    assert MAY_TEST.search(source) and MAY_TEST.search("isinstance(f(x), (str, np.integer))")


def test_every_allowed_dispatch_is_still_there():
    present = set()
    for module, function in ALLOWED:
        tree = ast.parse((PACKAGE / module).read_text())
        present |= {(module, f) for f, _ in _hand_checks(tree) if f == function}
    assert present == set(ALLOWED)
