"""The notebooks run from top to bottom, as committed (issue 6).

Every notebook in notebooks/ executes with nbclient on a kernel of this interpreter, in a
temporary working directory that also holds its temporary files, and must finish without an
error, show its figures inline and draw the README figure it is tagged with. ``make test``
executes them once, before pytest, for the documentation site's gallery (docs/gallery.py, one
kernel per core, kept by the notebook's bytes, the code and the environment); these tests
assert on those executed copies and execute a notebook themselves only when its copy is
missing. They are committed without outputs, so the diff of a notebook is its code and prose
only.
"""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ISSUE_NOTEBOOKS = {
    "01_hook_ablation",
    "02_custom_edge_masks",
    "03_attention_inspection",
    "04_tinymyo",
    "05_discovery",
    "06_braindecode",
    "07_attached_model",
    "08_what_an_edge_carries",
    "10_concept_erasure",
}
# Notebooks that need an optional extra: (the module they import, the extra that installs it).
NEEDS = {"06_braindecode": ("braindecode", "emg_lens[braindecode]")}


def _load(name: str):
    """docs/NAME.py: make_figures, the tool that runs the notebooks to draw the README figures,
    and gallery, which keeps executed notebooks for the documentation site."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_figures = _load("make_figures")
gallery = _load("gallery")


def _executed(path: Path, tmp_path: Path) -> nbformat.NotebookNode:
    """The notebook executed from top to bottom at this code: the gallery's copy (`make test`
    executes the gallery first, one kernel per core, so each notebook runs once) or, where that
    copy is missing (a bare pytest), executed here and kept as the gallery's."""
    cached = gallery.cached_path(path)
    if cached.is_file():
        return nbformat.read(cached, as_version=4)
    nb = make_figures.execute(path, tmp_path)  # raises CellExecutionError on any error
    gallery.store(path, nb)
    return nb


def _images(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def test_the_notebooks_of_the_issue_are_all_there():
    assert {path.stem for path in NOTEBOOKS} >= ISSUE_NOTEBOOKS


def test_make_figures_examples_hold():
    failures, tried = doctest.testmod(make_figures)
    assert tried and not failures


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_saved_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    stored = [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not stored, f"{path.name}: cells {stored} hold outputs; clear them before saving"


@pytest.mark.slow
def test_a_kernel_runs_without_the_users_startup_files_module_path_or_matplotlibrc(
    tmp_path, monkeypatch
):
    """Issue 57 item 9: the notebooks (the tests', the gallery's, the README figures') ran with
    the user's IPython startup files, PYTHONSTARTUP, PYTHONPATH and matplotlibrc."""
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-planted.py").write_text("PLANTED = 'ipython startup'\n")
    (tmp_path / "startup.py").write_text("PLANTED = 'PYTHONSTARTUP'\n")
    (tmp_path / "path").mkdir()
    (tmp_path / "path" / "planted_module.py").write_text("")
    (tmp_path / "rc").mkdir()
    (tmp_path / "rc" / "matplotlibrc").write_text("lines.linewidth: 7\n")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PYTHONSTARTUP", str(tmp_path / "startup.py"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "path"))
    monkeypatch.setenv("MATPLOTLIBRC", str(tmp_path / "rc"))
    notebook = tmp_path / "probe.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import importlib.util, os, matplotlib\n"
        "print(globals().get('PLANTED'), importlib.util.find_spec('planted_module'), "
        "os.environ['PYTHONPATH'], matplotlib.rcParams['lines.linewidth'], sep='|')"
    )]), notebook)  # fmt: skip
    (tmp_path / "run").mkdir()
    (cell,) = make_figures.execute(notebook, tmp_path / "run").cells
    printed = "".join(out.get("text", "") for out in cell.outputs).strip()
    assert printed == f"None|None|{ROOT}|1.5"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_without_error(path, tmp_path):
    module, extra = NEEDS.get(path.stem, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{path.name} needs {module}: pip install '{extra}' (make test installs it)")
    nb = _executed(path, tmp_path)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code), "a cell did not run"
    # Figures show inline (emg_lens leaves the backend to matplotlib, never forcing Agg) ...
    assert sum(_images(cell) for cell in code) >= 2, f"{path.name} showed fewer than 2 figures"
    # ... and so is the one figure of it that the README shows, docs/figures/<notebook>.png.
    assert list(make_figures.readme_figures(nb)) == [f"{path.stem}.png"]
