"""The README and the site's guide are the first thing a new user runs: every Python block of
README.md, docs/getting-started.md and docs/guide/*.md works as printed (`tests.docs_pages`),
and the README stays a landing page that points into the site."""

import linecache
import re

import pytest

from tests.docs_pages import ROOT, blocks, pages, section

README = ROOT / "README.md"
ON_THE_DEMO = (README, ROOT / "docs" / "guide" / "notebook.md")
"""The pages whose blocks read the demo's subject 1 (runs/demo/models/subject_1)."""
README_MAX_LINES = 250
"""The README is the landing page (issue 49); the manual is the site under docs/."""


def save_demo_checkpoint(folder) -> None:
    """A model of the demo's (`emg-lens demo`: its data's shape, `DEMO_MODEL`), untrained, where
    the demo saves subject 1's, with its data source: the blocks of `ON_THE_DEMO` load it. They
    run on a real demo's output in tests/unit/test_quickstarts.py's slow test of the blocks that
    read runs/demo."""
    from emg_lens.checkpoints import save_checkpoint
    from emg_lens.cli.demo import DEMO_MODEL
    from emg_lens.config import EncoderConfig, config_for_data
    from emg_lens.data.datasets import data_source, load_subject
    from emg_lens.data.synthetic.emg_acc import demo_setup
    from emg_lens.models import IsoNet

    synthetic, preprocess = demo_setup()
    modalities = {"emg": synthetic.n_emg, "acc": 3 * synthetic.n_acc_sensors}
    base = EncoderConfig.preset("demo", **DEMO_MODEL)
    source = data_source("synthetic", synthetic=synthetic, preprocess=preprocess)
    names = load_subject(source, 1).meta["channel_names"]  # DB2's, as the demo's training reads
    cfg = config_for_data(
        IsoNet, base, modalities, synthetic.n_gestures, preprocess.window, channel_names=names
    )
    path = folder / "runs" / "demo" / "models" / "subject_1"
    save_checkpoint(IsoNet(cfg), path, metadata={"subject": 1, "data_source": source})


@pytest.mark.parametrize(
    "page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix().replace("/", "-")
)
@pytest.mark.slow
def test_every_python_block_runs_as_printed(page, tmp_path, monkeypatch, capsys):
    """Each ``python`` block of a page, in a fresh namespace, in an empty working folder (those
    of `ON_THE_DEMO`, beside a model where `make demo` saves one)."""
    monkeypatch.chdir(tmp_path)
    if page in ON_THE_DEMO:
        save_demo_checkpoint(tmp_path)
    for block in (b for b in blocks("python") if b.page == page):
        # its source where a reader of frames finds it, as a file's (nnsight reads a trace's body)
        linecache.cache[block.where] = (len(block.text), None, block.text.splitlines(True), "")
        exec(compile(block.text, block.where, "exec"), {})
    out = capsys.readouterr().out
    if page == README:  # the demo's models: two layers over 12 sEMG and 12 ACC tokens
        assert "TokenLayout: 25 tokens" in out and "CLS -> acc attention per head" in out
        assert "channels(emg10,emg9) cut: test accuracy" in out and "emg1, emg2" in out
    if page == ON_THE_DEMO[1]:  # its test windows: the demo's 8 gestures, subject 1's
        assert "subject 1: 928 test windows" in out and "digitorum <-> acc cut: test" in out


def test_readme_is_a_landing_page_with_the_two_commands_and_links_into_the_site():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make demo" in text and "make test" in text and "make docs" in text
    assert [b.heading for b in blocks("python") if b.page == README] == ["## In a notebook"]
    for target in re.findall(r"\]\((docs/[^)#]+)", text):  # every link into the site resolves
        assert (ROOT / target).is_file(), target
    for page in [*sorted((ROOT / "docs" / "guide").glob("*.md")), ROOT / "docs" / "gallery.md"]:
        assert f"docs/{page.relative_to(ROOT / 'docs').as_posix()})" in text, page


def test_no_page_sends_the_user_to_a_local_package_mirror_for_the_cpu_build():
    """Issue 49: a user without an NVIDIA GPU is told what to pass, PyTorch's CPU wheel index."""
    texts = [page.read_text() for page in pages()] + [(ROOT / "Makefile").read_text()]
    assert not any("this workplace" in text or "finds it locally" in text for text in texts)
    assert all(
        'TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"' in text
        for text in (README.read_text(), (ROOT / "docs" / "getting-started.md").read_text())
    )


def test_a_pip_user_without_a_gpu_is_told_to_install_the_cpu_torch_first():
    """Issue 59: `pip install` of emg_lens alone pulls PyPI's CUDA torch (6.3 GB) onto a machine
    without a GPU; the README and Getting started say how to get the CPU build with pip. Issue
    85: within emg_lens's torch range (else pip replaces it), then emg_lens from the clone (the
    name is not published on PyPI)."""
    lines = (
        'pip install "torch>=2.10,<2.14" --index-url https://download.pytorch.org/whl/cpu\n'
        "pip install .  # or"
    )
    for page in (README, ROOT / "docs" / "getting-started.md"):
        found = [b.text for b in blocks("bash") if b.page == page and b.text.startswith(lines)]
        assert len(found) == 1, page
    assert '"torch>=2.10,<2.14"' in (ROOT / "pyproject.toml").read_text()  # the CPU build meets it


def test_bring_your_own_model_starts_with_attach(capsys):
    """Issue 38, item 8: the page opens with `attach` on a hand-written model, runnable."""
    text = section("# Bring your own model")
    first = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    assert "attach(net" in first and text.index("attach") < text.index("from_torch_encoder")
    exec(compile(first, "bring-your-own-model.md", "exec"), {})
    out = capsys.readouterr().out
    assert "['softmax', 'softmax'] torch.Size([8, 4, 6, 6])" in out and "True True" in out
