"""The README is the first thing a new user runs: its Python example must work as printed."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "TokenLayout: 49 tokens" in out and "CLS -> acc attention per head" in out


def test_readme_shows_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_bring_your_own_model_starts_with_attach(capsys):
    """Issue 38, item 8: the section opens with `attach` on a hand-written model, runnable."""
    text = README.read_text()
    section = text[text.index("\n## Bring your own model\n") :]
    first = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    assert "attach(net" in first and section.index("attach") < section.index("from_torch_encoder")
    exec(compile(first, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "['softmax', 'softmax'] torch.Size([8, 4, 6, 6])" in out and "True True" in out
