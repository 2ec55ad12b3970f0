"""What a kept training's key reads of a model beyond its weights (issue 57 item 1), without
training: `state_digest` (frozen flags, unsaved buffers, module state, shared tensors) and the
user's code (`code_files`: the model's file and the files it imports; `stale_code`: what runs
against what the files hold, with no false alarm on classes that remake their literals)."""

from __future__ import annotations

import importlib
import itertools
import sys

import pytest
import torch

from emg_lens.errors import ArgumentError
from emg_lens.provenance import state_digest
from emg_lens.train.model_code import code_files, stale_code


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A user's package ``pkg_<test>`` on sys.path: ``write(name, text)`` writes a module of
    it, ``load(name)`` imports it; its modules are forgotten after the test."""
    name = f"pkg_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(module: str, text: str) -> None:
        (root / f"{module}.py").write_text(text)

    def load(module: str):
        return importlib.import_module(f"{name}.{module}")

    yield name, write, load
    for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        sys.modules.pop(loaded)


NET = """\
import enum
import typing
from dataclasses import dataclass, field

import torch

from .layers import scaled
from . import settings


class Mode(enum.Enum):
    FAST = 1
    SLOW = 2


class Point(typing.NamedTuple):
    x: int = 3


@dataclass
class Options:
    width: int = 4
    tags: list = field(default_factory=list)


def logged(fn):
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


class Net(torch.nn.Linear):
    GAIN = 2.0
    mode = Mode.FAST

    @logged
    def forward(self, x):
        return scaled(super().forward(x)) * self.GAIN * settings.SCALE

    @property
    def doubled(self):
        return 2 * self.GAIN
"""


def _write_net(write) -> None:
    write("settings", "SCALE = 1.5\nDEBUG = False\nif DEBUG:\n    DEBUG = True\n")
    write("layers", "def scaled(x):\n    return x * 3\n")
    write("net", NET)


def test_the_files_of_the_model_and_of_its_imports_are_found(package):
    name, write, load = package
    _write_net(write)
    net = load("net").Net(2, 2)
    files = code_files(net)
    assert {f"{name}.net", f"{name}.layers", f"{name}.settings", name} <= set(files)
    assert not any(m.split(".")[0] in ("torch", "enum", "typing", "emg_lens") for m in files)


def test_enums_named_tuples_dataclasses_and_decorators_are_no_false_alarm(package):
    _, write, load = package
    _write_net(write)
    net = load("net").Net(2, 2)
    assert stale_code(net, code_files(net)) is None


@pytest.mark.parametrize(
    "change, said",
    [
        (lambda mod: setattr(mod["settings"], "SCALE", 2.5), r"SCALE is 2\.5 in the running code"),
        (lambda mod: setattr(mod["net"].Net, "GAIN", 3.0), r"Net\.GAIN is 3\.0 in the running"),
        (
            lambda mod: mod["write"]("layers", "def scaled(x):\n    return x * 4\n"),
            r"scaled runs other code than .*layers\.py holds",
        ),
    ],
)
def test_running_code_that_its_file_no_longer_holds_is_named(package, change, said):
    _, write, load = package
    _write_net(write)
    modules = {"settings": load("settings"), "net": load("net"), "write": write}
    net = modules["net"].Net(2, 2)
    change(modules)
    assert stale_code(net, code_files(net)) is not None
    assert __import__("re").search(said, stale_code(net, code_files(net)))


def test_a_model_built_before_a_reload_runs_the_old_class(package):
    _, write, load = package
    _write_net(write)
    old = load("net").Net(2, 2)
    write("net", NET.replace("* self.GAIN *", "* self.GAIN * 2 *"))
    importlib.reload(load("net"))
    assert stale_code(load("net").Net(2, 2), code_files(old)) is None
    assert "Net.forward runs other code" in stale_code(old, code_files(old))


def test_state_digest_tells_frozen_tied_and_unsaved_state_apart():
    def pair(tied: bool) -> torch.nn.Sequential:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
        with torch.no_grad():
            net[1].weight.copy_(net[0].weight)
        if tied:
            net[1].weight = net[0].weight
        return net

    assert state_digest(pair(False)) != state_digest(pair(True))  # equal values, shared or not
    net = pair(False)
    before = state_digest(net)
    net[0].weight.requires_grad_(False)
    assert state_digest(net) != before
    net[0].weight.requires_grad_(True)
    net.register_buffer("scale", torch.ones(1), persistent=False)
    assert state_digest(net) != before and "scale" not in net.state_dict()
    net.scale_fn = lambda x: x * 2  # an attribute holding code: its bytecode is the state
    with_fn = state_digest(net)
    net.scale_fn = lambda x: x * 3
    assert state_digest(net) != with_fn


def test_state_that_cannot_be_read_is_named():
    net = torch.nn.Linear(2, 2)
    net.steps = itertools.count()  # a counter that shows no state
    with pytest.raises(ArgumentError, match=r"^steps holds an object of type itertools\.count"):
        state_digest(net)
    nested: list = []
    for _ in range(40):
        nested = [nested]
    net.steps = nested  # deeper than any state a module holds
    with pytest.raises(ArgumentError, match=r"^steps(\[0\])+ nests deeper than 32 levels"):
        state_digest(net)
