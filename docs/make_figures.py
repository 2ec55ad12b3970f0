"""Write the README's Tour figures by running the notebooks.

A notebook's code cell whose metadata holds ``"readme_figure": "NAME.png"`` draws the figure
the README shows for it. This script executes each notebook from top to bottom in a temporary
folder, on a kernel of this interpreter, with inline figures at 150 dpi, and writes the image
of every such cell to ``docs/figures/NAME.png``:

    .venv/bin/python docs/make_figures.py                      # every notebook
    .venv/bin/python docs/make_figures.py notebooks/04_tinymyo.ipynb

`execute` is what ``tests/integration/test_notebooks.py`` runs, so the figures come from the
code the tests check.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from emg_lens.errors import DataFormatError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
FIGURES = ROOT / "docs" / "figures"
KERNEL = "emg-lens-python"  # a kernel spec written for this interpreter, whatever is installed
CELL_TIMEOUT_S = 600
DPI = 150


def _dpi_cell(dpi: int) -> nbformat.NotebookNode:
    """A first cell setting the inline figures' resolution, before the notebook's
    ``%matplotlib inline`` registers the figure formatter."""
    return nbformat.v4.new_code_cell(
        "from matplotlib_inline.config import InlineBackend\n\n"
        "InlineBackend.instance(parent=get_ipython()).print_figure_kwargs = "
        f'{{"bbox_inches": "tight", "dpi": {dpi}}}'
    )


USER_SETUP = (
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "IPYTHONDIR",
    "JUPYTER_CONFIG_DIR",
    "MATPLOTLIBRC",
    "MPLBACKEND",
    "PYTHONOPTIMIZE",
    "PYTHONWARNINGS",
)
"""What a user's shell may set that would change a notebook's run: another module path, startup
code (Python's, or IPython's in its profile), Jupyter's config, matplotlib's settings and
backend, asserts skipped (``PYTHONOPTIMIZE``: a notebook's checks would pass unchecked) and
warnings filtered or raised. A kernel runs without them (`kernel_environment`)."""


def kernel_threads() -> str:
    """The threads a kernel's torch computes with, which change a notebook's numbers (a
    training's weights): ``$OMP_NUM_THREADS`` where set, else 1 (kernels run side by side,
    one per core, in the gallery and under the notebook tests' workers).

    >>> kernel_threads() == os.environ.get("OMP_NUM_THREADS", "1")
    True
    """
    return os.environ.get("OMP_NUM_THREADS") or "1"


def kernel_environment(cwd: str | Path, home: str | Path) -> dict[str, str]:
    """The environment of a notebook's kernel: this process's, less `USER_SETUP`, with
    ``PYTHONPATH`` exactly this repository (its emg_lens is the one imported), IPython's and
    Jupyter's folders empty ones under ``home`` (no user profile, startup file or config),
    matplotlib's own default settings, no user site-packages, `kernel_threads` threads and
    ``TMPDIR`` at ``cwd``.

    >>> env = kernel_environment("/tmp/run", "/tmp/home")
    >>> env["PYTHONPATH"] == str(ROOT), env["IPYTHONDIR"], env["TMPDIR"]
    (True, '/tmp/home/ipython', '/tmp/run')
    >>> "PYTHONSTARTUP" in env, Path(env["MATPLOTLIBRC"]).name
    (False, 'matplotlibrc')
    """
    import matplotlib

    home = Path(home)
    env = {k: v for k, v in os.environ.items() if k not in USER_SETUP}
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "IPYTHONDIR": str(home / "ipython"),
        "JUPYTER_CONFIG_DIR": str(home / "jupyter"),
        "MATPLOTLIBRC": str(Path(matplotlib.get_data_path()) / "matplotlibrc"),
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": kernel_threads(),
        "TMPDIR": str(cwd),
    }


def execute(path: str | Path, cwd: str | Path, *, dpi: int | None = None) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` on a kernel of this Python (``sys.executable``) and return
    it with its outputs; the first failing cell raises `nbclient.exceptions.CellExecutionError`.
    The kernel works in ``cwd``, which also holds its temporary files (``TMPDIR``), so what the
    notebook writes goes away with ``cwd``; it runs isolated from the user's setup
    (`kernel_environment`: no IPython profile or startup file, no ``PYTHONPATH`` but this
    repository, no matplotlibrc). ``dpi`` sets the resolution of inline figures (an extra first
    cell, left out of the returned notebook).
    """
    nb = nbformat.read(path, as_version=4)
    if dpi is not None:
        nb.cells.insert(0, _dpi_cell(dpi))
    with tempfile.TemporaryDirectory() as specs:
        write_kernel_spec(Path(specs) / KERNEL)
        manager = KernelManager(
            kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[specs])
        )
        client = NotebookClient(
            nb, km=manager, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(cwd)}}
        )
        # cleanup_kc: shut the kernel down afterwards (the client does not own the manager)
        client.execute(cleanup_kc=True, env=kernel_environment(cwd, specs))
    if dpi is not None:
        nb.cells.pop(0)
    return nb


def readme_figures(nb: nbformat.NotebookNode) -> dict[str, bytes]:
    """The PNG drawn by each cell tagged ``readme_figure`` in an executed notebook, by file
    name (the cell's last image); a tagged cell that drew nothing raises `DataFormatError`.

    >>> cell = nbformat.v4.new_code_cell("plot()", metadata={"readme_figure": "a.png"})
    >>> cell.outputs = [nbformat.v4.new_output("display_data", {"image/png": "iVBORw0KGgo="})]
    >>> readme_figures(nbformat.v4.new_notebook(cells=[cell]))
    {'a.png': b'\\x89PNG\\r\\n\\x1a\\n'}
    """
    figures = {}
    for index, cell in enumerate(nb.cells):
        name = cell.get("metadata", {}).get("readme_figure")
        if name is None:
            continue
        images = [
            out["data"]["image/png"] for out in cell.outputs if "image/png" in out.get("data", {})
        ]
        if not images:
            raise DataFormatError(
                f"notebook cell {index} is tagged readme_figure={name!r} but drew no figure; "
                "it must display a matplotlib figure (e.g. end with plt.show())"
            )
        figures[name] = base64.b64decode(images[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    args = parser.parse_args(argv)
    FIGURES.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb")):
        with tempfile.TemporaryDirectory() as cwd:
            figures = readme_figures(execute(path, cwd, dpi=DPI))
        for name, png in figures.items():
            (FIGURES / name).write_bytes(png)
            print(f"{path.name}: wrote {(FIGURES / name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
