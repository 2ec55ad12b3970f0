"""Wrong-type calls of the masking functions (issue 85): a layout or model that is not one is
refused at the public door by name, not an ``AttributeError`` from inside the compile."""

from __future__ import annotations

import pytest

from emg_lens.edges import cross_modal
from emg_lens.errors import ArgumentError
from emg_lens.hooks import compile_edges, mask_edges

pytestmark = pytest.mark.unchecked  # a wrong type on purpose: emg_lens's error, not the suite's


@pytest.mark.parametrize("layout", [None, 7, "emg"], ids=["None", "int", "str"])
def test_mask_edges_refuses_a_layout_that_is_not_one_by_name(layout):
    with pytest.raises(ArgumentError, match=r"mask_edges.*layout.*TokenLayout.*got"):
        mask_edges(cross_modal(), layout=layout)


@pytest.mark.parametrize("model", [None, 7], ids=["None", "int"])
def test_compile_edges_refuses_a_model_that_is_not_one_by_name(model):
    with pytest.raises(ArgumentError, match=r"compile_edges.*model.*got"):
        compile_edges(cross_modal(), model)
