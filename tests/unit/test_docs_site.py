"""The documentation site's configuration (issue 49), checked without building it: every guide
page, notebook and public module is in mkdocs.yml's navigation, the build hooks and the
docstring rewriting do what their examples say, and the gallery's cache key follows the
notebook, the code and the environment that executes it. ``make docs`` builds the site
(`mkdocs build --strict`); what the built site shows in a browser is
tests/integration/test_docs_site_built.py."""

from __future__ import annotations

import doctest
import importlib.util
import re
import shutil

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
