"""The runtime type and shape checks at the public surface (issue 87): every function, dataclass
and other class (not an exception) in a public module's ``__all__`` carries
`emg_lens._hints.checked`, which the test run turns on (tests/typecheck.py) and a user's import
leaves a bare marker."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import jaxtyping
import pytest

from emg_lens import _hints
from emg_lens.export import _shapes_unchecked
from tests.unit.test_public_surface import PUBLIC


def exported() -> list[tuple[str, object]]:
    """``module.name`` and the object of every function and (non-exception) class exported."""
    found = []
    for module in PUBLIC:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            obj = getattr(mod, name)
            is_class = inspect.isclass(obj) and not issubclass(obj, BaseException)
            if inspect.isfunction(obj) or is_class:
                found.append((f"{module}.{name}", obj))
    return found


def test_every_exported_function_and_class_carries_the_check():
    found = exported()
    # its own mark, not one a class inherits from a marked base
    missing = [name for name, obj in found if not vars(obj).get(_hints.MARK, False)]
    assert len(found) > 250 and not missing, "\n".join(missing)
    assert sum(dataclasses.is_dataclass(obj) for _, obj in found) > 30


def test_the_test_run_checks_an_exported_function_a_dataclass_and_a_module():
    from emg_lens import layout, models

    assert _hints.CHECKS  # tests/typecheck.py, loaded by pyproject's addopts
    with pytest.raises(jaxtyping.TypeCheckError):
        layout.check_mask_shape((4, 7, 7), (3, 4, 7, 7), what=3)  # a str given an int
    with pytest.raises(jaxtyping.TypeCheckError):
        models.HookedEncoder(cfg=3)  # not an EncoderConfig
    with _shapes_unchecked():
        layout.check_mask_shape((4, 7, 7), (3, 4, 7, 7), what=3)  # the unchecked marker's way


def test_off_the_check_is_the_function_itself_with_the_marker(monkeypatch):
    monkeypatch.setattr(_hints, "CHECKS", False)

    def f(x: int) -> int:
        return x

    assert _hints.checked(f) is f and getattr(f, _hints.MARK) and f("1") == "1"
