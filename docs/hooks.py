"""mkdocs hooks of the documentation site (mkdocs.yml names this file under ``hooks:``).

- The site's home page is the README: ``index.md`` is generated from README.md, its links into
  docs/ and notebooks/ rewritten to the site's pages, so the landing text is written once.
- Every public module of `API_MODULES` must have its page, ``api/NAME.md`` rendering
  ``::: emg_lens.NAME``: a module without one fails the build.
- The site opens offline: the MathJax tag that nbconvert puts in every notebook page (the
  notebooks hold no math) is removed, and a page that would load a script, a style sheet or an
  image from the network fails the build, naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
API_MODULES = (
    "models",
    "layout",
    "config",
    "checkpoints",
    "edges",
    "hooks",
    "studies",
    "inspect",
    "discovery",
    "data",
    "train",
    "geometry",
    "report",
    "export",
    "errors",
)
"""The public modules of emg_lens that the API reference documents, one page each."""

MATHJAX = re.compile(
    r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*">\s*</script>'
    r'\s*<!-- MathJax configuration -->\s*<script type="text/x-mathjax-config">.*?</script>',
    flags=re.S,
)
REMOTE = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""")


def readme_as_home(text: str) -> str:
    """README.md's text with its links into the repository made links into the site.

    >>> readme_as_home("[guide](docs/guide/studies.md) ![f](docs/figures/a.png)")
    '[guide](guide/studies.md) ![f](figures/a.png)'
    >>> readme_as_home("[01](notebooks/01_hook_ablation.ipynb)")
    '[01](gallery/01_hook_ablation.ipynb)'
    """
    text = re.sub(r"\]\(docs/", "](", text)
    return re.sub(r"\]\(notebooks/([\w-]+\.ipynb)\)", r"](gallery/\1)", text)


def on_files(files, config):
    missing = []
    for name in API_MODULES:
        page = files.get_file_from_path(f"api/{name}.md")
        if page is None or f"::: emg_lens.{name}\n" not in Path(page.abs_src_path).read_text():
            missing.append(f"api/{name}.md (::: emg_lens.{name})")
    if missing:
        raise PluginError(f"the API reference lacks a page for: {', '.join(missing)}")
    if files.get_file_from_path("index.md") is not None:
        raise PluginError("docs/index.md must not exist: the home page is README.md")
    home = readme_as_home((ROOT / "README.md").read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=home))
    return files


def on_page_markdown(markdown, page, config, files):
    # docs/DESIGN.md points its readers at the README, which is the site's home page
    if page.file.src_uri in ("DESIGN.md", "ARCHITECTURE.md"):
        markdown = markdown.replace("](../README.md)", "](index.md)")
    return markdown


def on_post_page(output, page, config):
    output = MATHJAX.sub("", output)
    remote = REMOTE.search(output)
    if remote:
        tag = output[remote.start() : output.find(">", remote.end()) + 1]
        raise PluginError(
            f"{page.file.src_uri} would load from the network: {tag} (the site must open offline)"
        )
    return output
