"""Execute the notebooks for the documentation site's gallery, once per change.

The notebooks are committed without outputs. ``make docs`` runs this script first: each
notebook in notebooks/ is executed from top to bottom (`make_figures.execute`, the runner
``tests/integration/test_notebooks.py`` uses, in a temporary folder on a kernel of this
interpreter, isolated from the user's IPython profile, startup files, ``PYTHONPATH`` and
matplotlibrc) and the executed copy is kept in ``.cache/docs/notebooks/`` (git-ignored) under a
key of the notebook's bytes, the emg_lens code, the repository files the notebooks read
(studies/, hooks/, tests/data/) and the environment that runs them (`environment`: the Python
version and the installed version of every package the project depends on, and the kernels'
thread count, ``$OMP_NUM_THREADS`` or 1: `make_figures.kernel_threads`). The copies are
then laid out as ``docs/gallery/NAME.ipynb`` (git-ignored), which mkdocs-jupyter renders with
their outputs and figures. A second ``make docs`` with nothing changed executes nothing; a
notebook that fails stops the build.

    .venv/bin/python docs/gallery.py            # every notebook, cached, one kernel per core
    .venv/bin/python docs/gallery.py --check    # exit 1 naming those not cached yet

``make test`` runs this first, so each notebook executes once: the notebook tests
(tests/integration/test_notebooks.py) assert on the executed copies kept here, executing (and
storing) a notebook themselves only when its copy is missing, as under a bare ``pytest``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CACHE = ROOT / ".cache" / "docs" / "notebooks"
TRAININGS = ROOT / ".cache" / "gallery"
"""The kernels' ``$EMG_LENS_CACHE``: the subjects they preprocess and the trainings they keep
(`emg_lens.train.reuse`), apart from the user's cache. The test suite's private cache starts
with a copy of its trainings (conftest.py): a test that trains what a notebook trained (the
demo model, discovery's planted head, the erasure's planted models) reads it back, as the
training key allows only where model, windows, recipe, code and thread count are the same."""
GALLERY = ROOT / "docs" / "gallery"
READ_BY_NOTEBOOKS = ("studies", "hooks", "tests/data", "emg_lens/studies", "docs/make_figures.py")
"""Repository folders and files whose contents the notebooks read (study files, hook recipes,
LibEMG's Myo recordings, the study files emg_lens ships, the kernels' set-up): a change to one
executes the notebooks again."""
NOISE = ("TqdmWarning: IProgress not found",)
"""Warnings of the executing environment, not of the notebook, left off the gallery's pages:
tqdm's, that ipywidgets (for its notebook progress bars) is not installed."""


@functools.cache
def _make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_files() -> list[Path]:
    files = []
    for name in READ_BY_NOTEBOOKS:
        path = ROOT / name
        found = [path] if path.is_file() else path.rglob("*")
        files += sorted(p for p in found if p.is_file() and "__pycache__" not in p.parts)
    return files


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503).

    >>> _name("transformer-lens>=4.3,<5"), _name("Scikit_Learn >= 1.3"), _name("emg_lens[viz]")
    ('transformer-lens', 'scikit-learn', 'emg-lens')
    """
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_requirements() -> list[str]:
    """Every requirement pyproject.toml names: its dependencies and each extra's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {}).values()
    return [*project.get("dependencies", []), *(r for extra in extras for r in extra)]


@functools.cache
def environment() -> dict[str, str]:
    """What an executed notebook depends on besides its bytes and the code, for its cache key:
    the Python version and the installed version of each package the project depends on (its
    dependencies and extras in pyproject.toml: torch, TransformerLens, numpy, braindecode,
    ipykernel, ...) and of each package those require in turn (torchaudio, the CUDA
    libraries), ``"absent"`` where one is not installed.

    >>> env = environment()
    >>> env["python"] == sys.version and env["torch"] == importlib.metadata.version("torch")
    True
    """
    installed = {_name(d.metadata["Name"]): d for d in importlib.metadata.distributions()}
    versions = {"python": sys.version}
    todo = [_name(r) for r in _project_requirements()]
    while todo:
        name = todo.pop()
        if name in versions or name == "emg-lens":
            continue
        dist = installed.get(name)
        versions[name] = "absent" if dist is None else dist.version
        if dist is None:
            continue
        # what it needs itself (not its own extras, which nothing here asks for)
        todo += [_name(r) for r in dist.requires or [] if "extra==" not in r.replace(" ", "")]
    return dict(sorted(versions.items()))


def cache_key(path: str | Path) -> str:
    """The cache key of one notebook: its bytes, the emg_lens code (`code_digest`, which holds
    the version), the files of `READ_BY_NOTEBOOKS`, the `environment` and the kernels' thread
    count (`make_figures.kernel_threads`: a training's weights follow it); 24 hex digits."""
    from emg_lens.provenance import code_digest

    digest = hashlib.sha256(Path(path).read_bytes())
    digest.update(code_digest(_read_files()).encode())
    threads = _make_figures().kernel_threads()
    digest.update(json.dumps({**environment(), "threads": threads}, sort_keys=True).encode())
    return digest.hexdigest()[:24]


def cached_path(path: str | Path) -> Path:
    """Where the executed copy of the notebook at ``path`` is kept."""
    return CACHE / f"{Path(path).stem}-{cache_key(path)}.ipynb"


def store(path: str | Path, nb: nbformat.NotebookNode) -> Path:
    """Keep ``nb``, the notebook at ``path`` executed from top to bottom, in the cache (written
    to a temporary name and renamed, so concurrent writers never leave half a file); older
    copies of that notebook are removed."""
    target = cached_path(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob(f"{Path(path).stem}-*.ipynb"):
        if old != target:
            old.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=CACHE, suffix=".tmp", delete=False) as tmp:
        nbformat.write(nb, tmp)
    os.replace(tmp.name, target)
    return target


def without_noise(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without the stderr outputs that hold only a warning of `NOISE`.

    >>> cell = nbformat.v4.new_code_cell("import tqdm.auto")
    >>> cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=(
    ...     "/venv/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update jupyter\\n"
    ...     "  from .autonotebook import tqdm as notebook_tqdm\\n"))]
    >>> without_noise(nbformat.v4.new_notebook(cells=[cell])).cells[0].outputs
    []
    """
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                out
                for out in cell.outputs
                if not (
                    out.get("output_type") == "stream"
                    and out.get("name") == "stderr"
                    and any(noise in out.get("text", "") for noise in NOISE)
                    and out.get("text", "").count("Warning") == 1
                )
            ]
    return nb


def _execute(path: Path) -> Path:
    """Execute one notebook in a temporary folder and keep it in the cache."""
    print(f"gallery: {path.name}: executing ...", flush=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as cwd:
        cached = store(path, _make_figures().execute(path, cwd))
    print(f"gallery: {path.name}: executed in {time.monotonic() - start:.0f} s", flush=True)
    return cached


def build(notebooks: list[Path], jobs: int = 1) -> list[Path]:
    """Execute (or take from the cache) each notebook and lay it out in docs/gallery/.

    ``jobs`` notebooks execute at once, each on its own kernel (a process) of
    `make_figures.kernel_threads` threads (``OMP_NUM_THREADS``, else 1), so kernels do not
    fight over the cores; their cache is `TRAININGS`. A notebook that fails stops the build
    once the others running beside it have finished.
    """
    GALLERY.mkdir(parents=True, exist_ok=True)
    for stale in GALLERY.glob("*.ipynb"):
        if stale.stem not in {p.stem for p in notebooks}:
            stale.unlink()
    todo = [path for path in notebooks if not cached_path(path).is_file()]
    for path in notebooks:
        if path not in todo:
            print(f"gallery: {path.name}: cached ({cached_path(path).relative_to(ROOT)})")
    os.environ["EMG_LENS_CACHE"] = str(TRAININGS)
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        for _ in pool.map(_execute, todo):
            pass
    laid_out = []
    for path in notebooks:
        target = GALLERY / path.name
        nbformat.write(without_noise(nbformat.read(cached_path(path), as_version=4)), target)
        laid_out.append(target)
    return laid_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument(
        "--check", action="store_true", help="execute nothing: list the notebooks not cached"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="notebooks executed at once, one kernel each (default: one per core)",
    )
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.check:
        missing = [p.name for p in notebooks if not cached_path(p).is_file()]
        print("not cached: " + (", ".join(missing) or "none"))
        return 1 if missing else 0
    build(notebooks, jobs=args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
