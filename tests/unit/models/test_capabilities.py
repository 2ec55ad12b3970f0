"""The protocol of `emg_lens.models.base` (issue 48): each model's ``contract`` is what it can
do, told truthfully per model; what a capability promises holds where it is provided and is
refused by name where it is not; and nothing above ``emg_lens/models`` asks which class a
model is."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

from emg_lens.errors import ArgumentError, UnsupportedFeatureError
from emg_lens.models import TinyMyo
from emg_lens.models.base import (
    CAPABILITIES,
    LINEAR_READOUT,
    SPLIT_QKV,
    TL_WEIGHTS,
    is_model,
    provides,
    require,
)
from emg_lens.models.tl_surface import WEIGHT_SURFACE
from tests.unit.models import table

PACKAGE = Path(__file__).resolve().parents[3] / "emg_lens"


EVERY_TIER = table.names()  # native, converted and attached: the one model table


def _model(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return table.build(name)[0].eval()


@pytest.mark.parametrize("name", EVERY_TIER)
def test_the_tables_declared_traits_are_the_built_models(name):
    """The tests are generated from each row's declared capabilities and traits (no model is
    built at collection): they are what the built model says."""
    assert table.traits_of(table.get(name)) == table.DECLARED[name]


@pytest.mark.parametrize("name", EVERY_TIER)
def test_a_linear_readout_is_what_the_readout_computes_or_is_refused_saying_why(name):
    model = _model(name)
    assert is_model(model) and model.contract <= set(CAPABILITIES)
    # A model with no weight surface at all (an attached one) has no readout weights either;
    # one without stacked attention weights may still read out linearly (MultimodalTransformer)
    if not provides(model, LINEAR_READOUT) and not provides(model, TL_WEIGHTS):
        with pytest.raises(UnsupportedFeatureError, match="readout_map needs weights"):
            model.readout_map()
        return
    if not provides(model, LINEAR_READOUT):
        why = model.lacks(LINEAR_READOUT)
        assert why
        with pytest.raises(UnsupportedFeatureError, match=re.escape(why[:40])):
            model.readout_map()
        return
    for head in model.readout_heads:
        R, b_U = model.readout_map(head)
        with torch.no_grad():
            resid = model(model.example_input(3), return_type=None)
            logits = torch.einsum("bpd,pdc->bc", model.ln_final(resid), R) + b_U
            torch.testing.assert_close(logits, model.readout(resid, head), atol=1e-5, rtol=1e-5)
    with pytest.raises(
        ArgumentError, match=r"readout_map head must be one of \(.*\), got .no such head."
    ):
        model.readout_map("no such head")


@pytest.mark.parametrize("name", EVERY_TIER)
def test_split_qkv_input_keeps_the_outputs_or_is_refused(name):
    model = _model(name)
    x = model.example_input(2)
    if not provides(model, SPLIT_QKV):
        with pytest.raises(UnsupportedFeatureError, match="hook_q_input"):
            model.set_use_split_qkv_input(True)
        return
    with torch.no_grad():
        before = model(x)
        model.set_use_split_qkv_input(True)
        try:
            after, cache = model.run_with_cache(x)
        finally:
            model.set_use_split_qkv_input(False)
    assert any(key.endswith("hook_q_input") for key in cache.cache_dict)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_the_contract_is_per_model_not_per_class():
    cfg = table.build("tinymyo")[0].cfg
    readout = {
        task: provides(TinyMyo(cfg, task=task), LINEAR_READOUT) for task in TinyMyo.head_tasks
    }
    assert readout == {"classification": True, "reconstruction": False, "regression": False}
    lacks = TinyMyo(cfg, task="regression").lacks(LINEAR_READOUT)
    assert "task='regression'" in lacks


def test_models_without_weights_refuse_the_whole_weight_surface_by_name():
    for model in (table.build("mlp")[0], table.build("attached_qkv")[0]):
        assert not provides(model, TL_WEIGHTS)
        for name in WEIGHT_SURFACE:
            if name in vars(type(model)):  # its own (the MLP's classifier W_U)
                continue
            with pytest.raises(UnsupportedFeatureError, match=rf"has no {name} .*{name} needs"):
                getattr(model, name)
    with pytest.raises(UnsupportedFeatureError, match="convert the model first"):
        require(table.build("attached_qkv")[0], SPLIT_QKV, "a per-head input patch")
    with pytest.raises(UnsupportedFeatureError, match="no attention layers"):
        require(table.build("mlp")[0], SPLIT_QKV, "a per-head input patch")


def test_an_unknown_capability_is_refused_by_name():
    with pytest.raises(ArgumentError, match=r"a capability must be one of .*got 'weights'"):
        provides(table.build("mlp")[0], "weights")


def test_no_class_check_above_models():
    # A tool above emg_lens/models asks for a capability (provides/require) or calls a method
    # of the protocol; it does not test which model class it was given.
    classes = r"IsoNet|TinyMyo|Hierarchical\w*|Multimodal\w*|Hooked\w*|AttachedModel"
    check = re.compile(rf"isinstance\([^)]*\b({classes})\b|__name__\s*==\s*[\"']({classes})\b")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "models" not in path.relative_to(PACKAGE).parts[:1]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if check.search(line)
    ]
    assert found == []
