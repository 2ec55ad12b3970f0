"""The public surface (issue 74): what a user imports is the package `emg_lens` and the modules of
`API_MODULES` (docs/hooks.py: the one list, which the API reference's pages and the site's build
read too), each exporting exactly its public names in ``__all__``. The README, every page of the
site (docs/*.md, docs/guide/*.md), every notebook's code and every docstring example in the
package import only from them, and the README, the guide and the notebooks from at most
`MAX_MODULES` of them; an import from any other ``emg_lens.*`` module fails, naming its file,
line and module. Read with `ast` (doctest's parser for docstrings), nothing imported but the
public modules themselves."""

from __future__ import annotations

import ast
import doctest
import importlib
import json
import re
from pathlib import Path

import pytest

from tests.docs_pages import ROOT
from tests.unit.test_docs_site import _load, exported_names

PUBLIC = ("emg_lens", *(f"emg_lens.{name}" for name in _load("hooks").API_MODULES))
"""The modules a user imports."""
MAX_MODULES = 15
"""The README, guide pages and notebooks together import from at most this many modules."""
LANGUAGES = {"python", "py", "pycon"}


def _imports(code: str, where: str, first_line: int = 1) -> list[tuple[str, str]]:
    """``(where:line, module)`` of every ``emg_lens`` import in ``code`` (a notebook's ``%``
    and ``!`` lines blanked)."""
    code = re.sub(r"^\s*[%!].*$", "", code, flags=re.M)
    found = []
    for node in ast.walk(ast.parse(code)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        for module in modules:
            if module.split(".")[0] == "emg_lens":
                found.append((f"{where}:{first_line + node.lineno - 1}", module))
    return found


def _blocks(page: Path) -> list[tuple[int, str]]:
    """The Python blocks of a Markdown page: (the line of their first line, their code)."""
    found, fence, body = [], None, []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None and line.lstrip().startswith("```"):
            fence, body, start = line.strip()[3:].strip(), [], number + 1
        elif fence is not None and line.lstrip().startswith("```"):
            if fence in LANGUAGES:
                found.append((start, "\n".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
    return found


def _pycon(text: str) -> str:
    """A ``pycon`` block's code: its ``>>>`` and ``...`` lines."""
    examples = doctest.DocTestParser().get_examples(text)
    return "\n".join(e.source for e in examples) if ">>> " in text else text


def shown_imports() -> list[tuple[str, str]]:
    """The README's, the guide's and the notebooks' ``emg_lens`` imports."""
    found = []
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in [*pages, *sorted((ROOT / "docs" / "guide").glob("*.md"))]:
        for line, code in _blocks(page):
            found += _imports(_pycon(code), page.relative_to(ROOT).as_posix(), line)
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
            code = "".join(cell["source"])
            found += _imports(code, f"{notebook.relative_to(ROOT).as_posix()} code cell {i}")
    return found


def docstring_imports() -> list[tuple[str, str]]:
    """The ``emg_lens`` imports of every docstring example in the package."""
    found, parser = [], doctest.DocTestParser()
    shown = re.compile(r">>>\s+(from|import)\s+emg_lens")  # no example imports it otherwise
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for path in sorted((ROOT / "emg_lens").rglob("*.py")):
        where, source = path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)) if shown.search(source) else ():
            text = ast.get_docstring(node, clean=False) if isinstance(node, kinds) else None
            if not text or not shown.search(text):
                continue
            start = node.body[0].lineno  # the docstring's first line
            for example in parser.get_examples(text or ""):
                found += _imports(example.source, where, start + example.lineno)
    return found


def outside(imports: list[tuple[str, str]]) -> list[str]:
    """Each import of a module off the public surface, as ``file:line: module``.

    >>> outside([("a.md:3", "emg_lens.edges"), ("b.md:9", "emg_lens.edges.named")])
    ['b.md:9: emg_lens.edges.named is not public (import it from emg_lens or one of ...)']
    """
    return [
        f"{where}: {module} is not public (import it from emg_lens or one of ...)"
        for where, module in imports
        if module not in PUBLIC
    ]


def test_the_readme_guide_and_notebooks_import_from_a_few_public_modules():
    shown = shown_imports()
    assert not outside(shown), "\n".join(outside(shown)) + f"\npublic: {', '.join(PUBLIC)}"
    modules = sorted({module for _, module in shown})
    assert 10 <= len(modules) <= MAX_MODULES, modules


def test_every_docstring_example_imports_from_the_public_surface():
    found = docstring_imports()
    assert len(found) > 100 and not outside(found), "\n".join(outside(found))


def test_the_checks_find_an_import_off_the_surface_where_it_is(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\nimport torch\nfrom emg_lens.edges.named import x\n```\n")
    ((line, code),) = _blocks(page)
    assert outside(_imports(code, "page.md", line)) == [
        "page.md:5: emg_lens.edges.named is not public (import it from emg_lens or one of ...)"
    ]
    text = '"""Example.\n\n>>> 1\n1\n>>> import emg_lens.data.recording\n"""\n'
    (example,) = [e for e in doctest.DocTestParser().get_examples(text) if "import" in e.source]
    assert _imports(example.source, "m.py", 1 + example.lineno) == [
        ("m.py:5", "emg_lens.data.recording")
    ]
    assert _imports(_pycon(">>> from emg_lens import hooks\n"), "p", 1) == [("p:1", "emg_lens")]


def test_the_api_reference_opens_with_the_names_a_notebook_needs():
    # as TransformerLens's README opens with HookedTransformer: each name's import line first
    text = (ROOT / "docs" / "api" / "index.md").read_text(encoding="utf-8")
    lines = re.findall(r"^\| `(from emg_lens[\w.]* import [\w, ]+)` \|", text, flags=re.M)
    assert 15 <= len(lines) <= 25 and text.index(lines[-1]) < text.index("| Models (")
    names = []
    for line in lines:
        (node,) = ast.parse(line).body
        assert node.module in PUBLIC, line
        assert all(a.name in exported_names(node.module) for a in node.names), line
        names += [a.name for a in node.names]
    assert 18 <= len(set(names)) <= 25 and "load_checkpoint_data" in names and "channels" in names


@pytest.mark.slow  # imports torch, TransformerLens and every public module
def test_each_public_module_exports_what_its_all_names_once():
    for module in PUBLIC:
        imported = importlib.import_module(module)
        names = imported.__all__
        assert len(names) == len(set(names)), (module, sorted(set(names)))
        missing = [name for name in names if not hasattr(imported, name)]
        assert not missing, f"{module}.__all__ names what it lacks: {missing}"


def test_only_packages_and_public_modules_declare_all():
    # An internal module's __all__ would claim an interface nobody may import; without one,
    # ruff refuses a name imported only to be re-exported, so each comes from where it lives.
    declaring = []
    for path in sorted((ROOT / "emg_lens").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__" or ".".join(parts) in PUBLIC:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                declaring.append(".".join(parts))
    assert not declaring, f"internal modules declaring __all__: {declaring}"
