"""How much of the package is guards (issue 87): an ast scan of its modules, without importing
them, that counts code lines, guard lines, ``raise`` sites and exception classes.

A code line is a line with a token that is neither a comment nor part of a docstring. A guard
line is a code line of a ``raise`` statement; of an ``if`` whose body only assigns and then
raises (its test and its body; an ``elif`` too); of the assignments just before such an ``if``,
a ``raise`` or a check helper's call whose names it reads and nothing after it does (a message
built apart); or of a call to a check helper. A check helper is a function of the package named
``check``, ``check_*``, ``_check*``, ``require*``, ``_require*``, ``refuse*`` or ``_refuse*``
whose body raises, itself or by calling another check helper (``check_int``, ``check_ints``,
``check_number``, ``check_bool`` ... of ``emg_lens.errors``; the list found is printed). Calls
are matched by the name called (``self._check(...)`` too).

An exception class is a class of the package with a builtin exception or another exception
class of the package among its bases; for each, the ``raise`` statements and the ``except``
clauses that name it, and its other references (passed as ``error=``, ``isinstance``, kept in
a tuple; imports and its subclasses' bases are not counted)::

    python tools/guards.py              # emg_lens/, modules by guard lines, then the classes
    python tools/guards.py PKG --json   # the same as JSON

``raise_tails`` counts the guard lines that continue a ``raise`` past its first line (a message
wrapped at the line length): what writing every raise on one line would save. ``--coverage
FILE`` (the JSON report of a test run under coverage.py, ``coverage json``) adds how many raise
sites the run executed, and names the others: a guard no test reaches is a door untested or a
check nothing can reach (pytest-cov is no dependency of the project: ``pip install pytest-cov``)::

    pytest -n 2 --cov=emg_lens --cov-report=json:.coverage.json
    python tools/guards.py --coverage .coverage.json
"""

from __future__ import annotations

import argparse
import ast
import builtins
import io
import json
import re
import sys
import tokenize
from pathlib import Path

HELPER_NAME = re.compile(r"check|check_\w*|_check\w*|_?require\w*|_?refuse\w*")
NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def _lines(node: ast.AST, last: ast.AST | None = None) -> set[int]:
    """The lines from ``node``'s first to ``last``'s (default ``node``'s) last."""
    end = (last or node).end_lineno or node.lineno  # type: ignore[attr-defined]
    return set(range(node.lineno, end + 1))  # type: ignore[attr-defined]


def _name(node: ast.AST) -> str | None:
    """``X`` of ``X`` or ``a.X``."""
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)


def _names(node: ast.AST | None) -> set[str]:
    """Every name (or attribute) in ``node``."""
    return {n for sub in ast.walk(node) if (n := _name(sub))} if node else set()


def code_lines(source: str, tree: ast.Module) -> set[int]:
    """The lines with a token that is no comment, less the docstrings'."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if doc and isinstance(first.value.value, str):  # type: ignore[union-attr]
                lines -= _lines(first)  # type: ignore[arg-type]
    return lines


def find_helpers(trees: dict[str, ast.Module]) -> list[str]:
    """The names of the check helpers (see the module docstring)."""
    bodies: dict[str, list[ast.AST]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if function and HELPER_NAME.fullmatch(node.name):  # type: ignore[attr-defined]
                bodies.setdefault(node.name, []).append(node)  # type: ignore[attr-defined]
    helpers = {
        name
        for name, defs in bodies.items()
        if any(isinstance(n, ast.Raise) for d in defs for n in ast.walk(d))
    }
    grown = True
    while grown:  # helpers that raise through another helper
        calls = {
            name
            for name, defs in bodies.items()
            for d in defs
            for n in ast.walk(d)
            if isinstance(n, ast.Call) and _name(n.func) in helpers
        }
        grown = not calls <= helpers
        helpers |= calls
    return sorted(helpers)


def guard_lines(tree: ast.Module, helpers: set[str]) -> set[int]:
    """The lines of raises, of ifs that exist to raise (and the assignments that only build
    their message), and of check helper calls."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) or (
            isinstance(node, ast.Call) and _name(node.func) in helpers
        ):
            lines |= _lines(node)
        for block in _blocks(node):
            lines |= _raising_ifs(block, helpers)
    return lines


def _blocks(node: ast.AST) -> list[list[ast.stmt]]:
    """The statement lists directly under ``node`` (a body, an else, a handler's body)."""
    fields = ("body", "orelse", "finalbody")
    blocks = [getattr(node, f) for f in fields if isinstance(getattr(node, f, None), list)]
    return [b for b in blocks if b and isinstance(b[0], ast.stmt)]


def _raising_ifs(block: list[ast.stmt], helpers: set[str]) -> set[int]:
    """In one statement list: each ``if`` whose body only assigns and then raises (its test and
    body), and the assignments just before such an ``if``, a ``raise`` or a check helper's call
    whose names are read there and nowhere after it (a message built apart is still the
    guard's)."""
    lines: set[int] = set()
    for i, stmt in enumerate(block):
        raising = isinstance(stmt, ast.If) and _only_raises(stmt.body)
        value = getattr(stmt, "value", None)
        checking = isinstance(value, ast.Call) and _name(value.func) in helpers
        if not (raising or checking or isinstance(stmt, ast.Raise)):
            continue
        lines |= _lines(stmt, stmt.body[-1] if raising else None)  # type: ignore[attr-defined]
        later = _names(ast.Module(body=block[i + 1 :], type_ignores=[]))
        j = i - 1
        while j >= 0 and isinstance(block[j], ast.Assign):
            assigned = {t.id for t in block[j].targets if isinstance(t, ast.Name)}  # type: ignore[attr-defined]
            if not assigned or not assigned <= _names(stmt) or assigned & later:
                break
            lines |= _lines(block[j])
            j -= 1
    return lines


def _only_raises(body: list[ast.stmt]) -> bool:
    """Whether ``body`` assigns (or calls) and ends in a raise."""
    simple = ast.Assign | ast.AnnAssign | ast.AugAssign | ast.Expr
    return isinstance(body[-1], ast.Raise) and all(isinstance(s, simple) for s in body[:-1])


def exception_classes(trees: dict[str, ast.Module]) -> dict[str, dict]:
    """``{name: {"module", "bases"}}`` of the package's exception classes."""
    defined = {
        node.name: (module, [b for b in map(_name, node.bases) if b])
        for module, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    found = set(BUILTIN_EXCEPTIONS)
    grown = True
    while grown:
        new = {n for n, (_, bases) in defined.items() if n not in found and set(bases) & found}
        grown, found = bool(new), found | new
    return {
        name: {"module": module, "bases": bases}
        for name, (module, bases) in defined.items()
        if name in found
    }


def class_uses(trees: dict[str, ast.Module], classes: dict[str, dict]) -> None:
    """Add to each class its ``raises``, ``excepts`` and ``others`` (see the docstring)."""
    for entry in classes.values():
        entry.update(raises=0, excepts=0, others=0)
    for tree in trees.values():
        counted: set[int] = set()  # ids of the name nodes a raise, except or base holds
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise | ast.ExceptHandler):
                held = node.exc if isinstance(node, ast.Raise) else node.type
                key = "raises" if isinstance(node, ast.Raise) else "excepts"
                for named in _names(held) & set(classes):
                    classes[named][key] += 1
                counted |= {id(n) for n in ast.walk(held)} if held else set()
            elif isinstance(node, ast.ClassDef):
                counted |= {id(n) for b in node.bases for n in ast.walk(b)}
        for node in ast.walk(tree):
            name = _name(node)
            load = isinstance(getattr(node, "ctx", None), ast.Load)  # not an import's alias
            if name in classes and load and id(node) not in counted:
                classes[name]["others"] += 1


def scan(package: Path, report_file: Path | None = None) -> dict:
    """The counts of every module of ``package`` (see the module docstring); with
    ``report_file``, `raise_coverage` of the same parsed modules under ``"coverage"``."""
    sources = {str(p.relative_to(package)): p.read_text() for p in sorted(package.rglob("*.py"))}
    trees = {module: ast.parse(source) for module, source in sources.items()}
    helpers = find_helpers(trees)
    modules = {}
    for module, tree in trees.items():
        lines = code_lines(sources[module], tree)
        raises = [n for n in ast.walk(tree) if isinstance(n, ast.Raise)]
        tails = set().union(*(_lines(n) - {n.lineno} for n in raises)) & lines
        guard = len(guard_lines(tree, set(helpers)) & lines)
        modules[module] = {"code": len(lines), "guard": guard, "raises": len(raises)}
        modules[module]["raise_tails"] = len(tails)
    code, guard, tails = (
        sum(m[k] for m in modules.values()) for k in ("code", "guard", "raise_tails")
    )
    share = round(guard / code, 4) if code else 0.0
    raises = sum(m["raises"] for m in modules.values())
    classes = exception_classes(trees)
    class_uses(trees, classes)
    covered = {"coverage": raise_coverage(trees, package.name, report_file)} if report_file else {}
    return {
        "modules": modules,
        "total": {
            "code": code,
            "guard": guard,
            "share": share,
            "raises": raises,
            "raise_tails": tails,
        },
        "helpers": helpers,
        "classes": classes,
        **covered,
    }


def raise_coverage(trees: dict[str, ast.Module], name: str, report_file: Path) -> dict:
    """Which raise sites of the package ``name`` (its parsed modules, ``trees``) a test run
    executed, from coverage.py's JSON report (``{"files": {path: {"executed_lines": [...]}}}``,
    paths ending in ``name`` and the module's path): ``executed`` (a count) and
    ``not_executed`` (``module:line``), modules the report lacks counted as not executed."""
    files = json.loads(report_file.read_text())["files"]
    ran_by_path = {k.replace("\\", "/"): set(v["executed_lines"]) for k, v in files.items()}
    executed, missed = 0, []
    for module, tree in trees.items():
        tail = f"{name}/{module}"
        ran = next(
            (v for k, v in ran_by_path.items() if k == tail or k.endswith("/" + tail)), set()
        )
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise):
                if node.lineno in ran:
                    executed += 1
                else:
                    missed.append(f"{module}:{node.lineno}")
    return {"executed": executed, "not_executed": sorted(missed)}


def report(counts: dict, top: int | None) -> str:
    """The counts as text: modules by guard lines, the total, the helpers, the classes."""
    modules = sorted(counts["modules"].items(), key=lambda kv: (-kv[1]["guard"], kv[0]))
    out = [f"{'guard':>6} {'code':>6} {'share':>6} {'raises':>6}  module"]
    for module, m in modules[:top]:
        share = f"{100 * m['guard'] / m['code']:.1f}" if m["code"] else "-"
        out.append(f"{m['guard']:>6} {m['code']:>6} {share:>6} {m['raises']:>6}  {module}")
    t = counts["total"]
    out.append(
        f"total: {t['guard']} guard lines of {t['code']} code lines "
        f"({100 * t['share']:.1f} %), {t['raises']} raise sites; {t['raise_tails']} of the "
        "guard lines continue a raise past its first line"
    )
    if covered := counts.get("coverage"):
        missed = covered["not_executed"]
        out.append(
            f"raise sites the test run executed: {covered['executed']} of {t['raises']}; "
            f"not: {', '.join(missed) or 'none'}"
        )
    out.append(f"check helpers ({len(counts['helpers'])}): {', '.join(counts['helpers'])}")
    out.append(f"{len(counts['classes'])} exception classes (raises, excepts, others, bases):")
    for name, c in sorted(counts["classes"].items()):
        bases = ", ".join(c["bases"])
        out.append(
            f"  {name:<28} {c['raises']:>4} {c['excepts']:>4} {c['others']:>4}  ({bases})"
            f"  {c['module']}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parents[1] / "emg_lens"
    parser.add_argument("package", nargs="?", type=Path, default=default)
    parser.add_argument("--json", action="store_true", help="the counts as JSON")
    parser.add_argument("--top", type=int, help="only the N modules with most guard lines")
    parser.add_argument("--coverage", type=Path, help="coverage.py's JSON report of a test run")
    args = parser.parse_args(argv)
    counts = scan(args.package, args.coverage)
    print(json.dumps(counts, indent=1) if args.json else report(counts, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
