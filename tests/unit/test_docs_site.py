"""The documentation site's configuration (issue 49), checked without building it: every guide
page, notebook and public module is in mkdocs.yml's navigation, every name a public module
exports has an entry in the API reference, no notebook heading holds code (issue 59), the build
hooks and the docstring rewriting do what their examples say, and the gallery's cache key
follows the notebook, the code and the environment that executes it. ``make docs`` builds the site
(`mkdocs build --strict`); what the built site shows in a browser is
tests/integration/test_docs_site_built.py."""

from __future__ import annotations

import ast
import doctest
import functools
import importlib.util
import re
import shutil
import textwrap

from tests.docs_pages import ROOT

DOCS = ROOT / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav() -> list[str]:
    """The pages mkdocs.yml's nav names, in order."""
    text = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    return re.findall(r"^\s+-\s+(?:[^:\n]+:\s+)?([\w./-]+\.(?:md|ipynb))$", text, flags=re.M)


def test_the_build_hooks_and_the_docstring_rewriting_keep_their_examples():
    for name in ("hooks", "griffe_docstrings", "gallery"):
        failures, tried = doctest.testmod(_load(name))
        assert tried and not failures, name


def test_every_guide_page_notebook_and_public_module_is_in_the_nav():
    nav = _nav()
    guide = [f"guide/{p.name}" for p in sorted((DOCS / "guide").glob("*.md"))]
    assert guide and set(guide) <= set(nav), sorted(set(guide) - set(nav))
    notebooks = [f"gallery/{p.name}" for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    assert len(notebooks) == 10 and [p for p in nav if p.startswith("gallery/")] == notebooks
    api = [f"api/{name}.md" for name in _load("hooks").API_MODULES]
    assert [p for p in nav if p.startswith("api/") and p != "api/index.md"] == api
    for page in api:  # each renders its module with mkdocstrings
        module = page.removeprefix("api/").removesuffix(".md")
        assert f"::: emg_lens.{module}\n" in (DOCS / page).read_text(), page
    design = (ROOT / "docs/DESIGN.md").relative_to(DOCS).as_posix()  # cited as docs/DESIGN.md
    for page in ("getting-started.md", "concepts.md", "ARCHITECTURE.md", design):
        assert page in nav and (DOCS / page).is_file(), page


def test_the_gallery_cache_key_follows_the_notebook(tmp_path):
    gallery = _load("gallery")
    notebook = ROOT / "notebooks" / "02_custom_edge_masks.ipynb"
    copy = tmp_path / notebook.name
    shutil.copyfile(notebook, copy)
    assert gallery.cache_key(copy) == gallery.cache_key(notebook)
    copy.write_text(copy.read_text().replace("edge", "Edge", 1))
    assert gallery.cache_key(copy) != gallery.cache_key(notebook)
    assert gallery.cached_path(notebook).parent == ROOT / ".cache" / "docs" / "notebooks"


def test_the_gallery_cache_key_follows_the_environment(monkeypatch):
    # issue 57 item 9: a site built by another Python, torch or package version than the one
    # a cached notebook was executed with took that notebook's outputs as its own
    import importlib.metadata
    import sys

    gallery = _load("gallery")
    notebook = ROOT / "notebooks" / "02_custom_edge_masks.ipynb"
    env = gallery.environment()
    assert env["python"] == sys.version
    for name in ("torch", "transformer-lens", "numpy", "matplotlib", "ipykernel", "nbclient"):
        assert env[name] == importlib.metadata.version(name), name
    key = gallery.cache_key(notebook)
    for change in ({"torch": "0.0"}, {"python": "3.0"}, {"numpy": "absent"}, {"other": "1"}):
        monkeypatch.setattr(gallery, "environment", lambda change=change: {**env, **change})
        assert gallery.cache_key(notebook) != key, change
    monkeypatch.setattr(gallery, "environment", lambda: dict(env))
    assert gallery.cache_key(notebook) == key


def test_the_gallery_kernels_check_their_asserts_and_the_key_follows_their_threads(monkeypatch):
    # PYTHONOPTIMIZE=1 reached the kernels: the notebooks' asserts were skipped and that
    # unchecked copy was cached under the key a checked one has; the thread count a training's
    # weights follow was in no key
    gallery = _load("gallery")
    make_figures = gallery._make_figures()
    notebook = ROOT / "notebooks" / "02_custom_edge_masks.ipynb"
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    key = gallery.cache_key(notebook)
    monkeypatch.setenv("PYTHONOPTIMIZE", "1")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    env = make_figures.kernel_environment("/tmp/run", "/tmp/home")
    assert "PYTHONOPTIMIZE" not in env and "PYTHONWARNINGS" not in env
    assert env["OMP_NUM_THREADS"] == "1" and gallery.cache_key(notebook) == key
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert make_figures.kernel_environment("/tmp/run", "/tmp/home")["OMP_NUM_THREADS"] == "3"
    assert gallery.cache_key(notebook) != key


# The API reference lists every public name (issue 59). The public modules are the package
# itself (`emg_lens`, whose `__all__` re-exports the errors, `EncoderConfig` and `TokenLayout`)
# and the modules of `API_MODULES`, one page each; their exported names are their `__all__`,
# less the names mkdocs.yml's filter hides (``!^_``: `__version__`). mkdocstrings renders a
# name of a page's ``::: emg_lens.MODULE`` at the id ``emg_lens.MODULE.NAME`` when griffe, which
# reads the source without running it, finds it bound in the module (defined there, or imported:
# at the top or under ``if TYPE_CHECKING:``; a name that a module's ``__getattr__`` imports on
# first use is invisible to it), when no submodule of the same name shadows it (griffe takes
# `emg_lens.train.finetune` for the module, so the function is its own directive,
# ``::: emg_lens.train.finetune.finetune``) and when its definition has a docstring (an
# undocumented name is left out). The package renders no page of its own: each name it exports
# is the entry of the module it imports it from. All of this is read from the source (`ast`),
# not imported: no torch, a second at most.


def _module_source(module: str):
    path = ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@functools.cache
def _statements(module: str) -> list:
    """A module's top-level statements, with those under ``if TYPE_CHECKING:``."""
    found = []
    for node in ast.parse(_module_source(module).read_text(encoding="utf-8")).body:
        test = node.test if isinstance(node, ast.If) else None
        if test is not None and "TYPE_CHECKING" in ast.unparse(test):
            found += node.body
        else:
            found.append(node)
    return found


def _shadowed(module: str, name: str) -> bool:
    """Whether a submodule of the package ``module`` is called ``name``."""
    folder = ROOT / module.replace(".", "/")
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def exported_names(module: str) -> list[str]:
    """``module``'s ``__all__``, less the names the site's filter hides (``_``-prefixed).

    >>> exported_names("emg_lens.config")
    ['PRESETS', 'EncoderConfig', 'config_for_data']
    """
    for node in _statements(module):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return [name for name in ast.literal_eval(node.value) if not name.startswith("_")]
    raise AssertionError(f"{module} has no __all__")


def definition(module: str, name: str) -> tuple[str, str | None]:
    """The module that defines ``name`` of ``module`` as griffe finds it (following imports;
    "" when the source does not bind the name) and its docstring.

    >>> definition("emg_lens", "TokenLayout")[0]
    'emg_lens.layout'
    >>> definition("emg_lens.config", "PRESETS")[1] is not None
    True
    """
    body = _statements(module)
    for i, node in enumerate(body):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name and node.module.startswith("emg_lens"):
                    return definition(node.module, alias.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return module, ast.get_docstring(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                after = body[i + 1] if i + 1 < len(body) else None
                string = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                return module, after.value.value if string else None
    return "", None


def api_directives() -> dict[str, dict]:
    """Each ``::: OBJECT`` of the API pages, with its options (``members`` among them)."""
    import yaml

    found = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^::: (\S+)\n((?:[ \t]+\S.*\n?)*)", text, flags=re.M):
            options = yaml.safe_load(textwrap.dedent(match.group(2))) if match.group(2) else None
            found[match.group(1)] = (options or {}).get("options", {})
    return found


def public_names() -> list[tuple[str, str]]:
    """(module, name) for every exported name of every public module."""
    modules = ["emg_lens", *(f"emg_lens.{name}" for name in _load("hooks").API_MODULES)]
    return [(module, name) for module in modules for name in exported_names(module)]


def api_entry(module: str, name: str) -> str:
    """The id of ``name``'s entry in the API reference.

    >>> api_entry("emg_lens", "EncoderConfig"), api_entry("emg_lens.train", "fit")
    ('emg_lens.config.EncoderConfig', 'emg_lens.train.fit')
    >>> api_entry("emg_lens.train", "finetune")  # the module of that name shadows it
    'emg_lens.train.finetune.finetune'
    """
    if module == "emg_lens":  # the package's names are entries of the modules they come from
        source = definition(module, name)[0]  # itself for a name it defines (the demo's recipe)
        return api_entry(source, name) if source not in ("", module) else f"{module}.{name}"
    if _shadowed(module, name):
        return f"{definition(module, name)[0]}.{name}"
    return f"{module}.{name}"


def missing_entries() -> list[str]:
    """Every exported name of a public module that the API pages do not render, and why."""
    directives, missing = api_directives(), []
    for module, name in public_names():
        entry = api_entry(module, name)
        owner, _, short = entry.rpartition(".")
        source, docstring = definition(owner, short)
        members = directives.get(owner, {}).get("members", True)
        if entry not in directives and owner not in directives:
            missing.append(f"{module}.{name}: no API page renders {entry} or {owner}")
        elif entry not in directives and members is not True and short not in (members or []):
            missing.append(f"{module}.{name}: {owner}'s directive lists members without it")
        elif not source:
            missing.append(f"{module}.{name}: {owner} binds it only lazily (__getattr__)")
        elif not docstring:
            missing.append(f"{module}.{name}: no docstring in {source}")
    return missing


def test_every_exported_name_of_a_public_module_has_an_api_entry():
    assert not missing_entries(), "\n".join(missing_entries())
    entries = {api_entry(module, name) for module, name in public_names()}
    wanted = ("checkpoints.load_checkpoint", "layout.TokenLayout", "config.EncoderConfig")
    wanted += ("train.fit", "train.TrainConfig", "data.read_files")
    assert {f"emg_lens.{name}" for name in wanted} <= entries


def test_no_notebook_heading_holds_code():
    # issue 59: mkdocs-jupyter builds a gallery page's table of contents from the notebook's
    # Markdown with every `code` span removed, so "## The circuit (`discover`)" was listed as
    # "The circuit ()" and linked to an anchor the page lacks (the heading's keeps the code)
    import json

    headings = [
        f"{notebook.name}: {line}"
        for notebook in sorted((ROOT / "notebooks").glob("*.ipynb"))
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        if cell["cell_type"] == "markdown"
        for line in "".join(cell["source"]).splitlines()
        if re.match(r"#{1,6} ", line)
    ]
    with_code = [heading for heading in headings if "`" in heading]
    assert len(headings) > 9 and not with_code, with_code
