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


def execute(path: str | Path, cwd: str | Path, *, dpi: int | None = None) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` on a kernel of this Python (``sys.executable``) and return
    it with its outputs; the first failing cell raises `nbclient.exceptions.CellExecutionError`.
    The kernel works in ``cwd``, which also holds its temporary files (``TMPDIR``), so what the
    notebook writes goes away with ``cwd``. ``dpi`` sets the resolution of inline figures (an
    extra first cell, left out of the returned notebook).
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
        client.execute(cleanup_kc=True, env={**os.environ, "TMPDIR": str(cwd)})
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
