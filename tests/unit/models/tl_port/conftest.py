"""The models TransformerLens's own tests are ported onto (issue 47, section 1): the rows of the
test models' table (`tests.unit.models.table`, native, converted and attached) each port
applies to, chosen by capability (`emg_lens.models.base.provides`) as the contract test chooses
its checks. Each model is built once per session; every test gets it with no hook and every
hook flag off, and leaves it so.
"""

from __future__ import annotations

import pytest
import torch

from emg_lens.errors import LayoutError
from emg_lens.models.base import ATTENTION_HOOKS, LAYERWISE, SPLIT_QKV, TL_WEIGHTS, provides
from tests.unit.models import table


def _stacked(name: str) -> bool:
    """The model has a shared stack ``blocks`` (the MultimodalTransformer's layers are all
    its stems')."""
    return table.get(name).cfg.n_layers > 0


def _one_layout(name: str) -> bool:
    """Every attention layer sees the model's layout, unfolded, and layer 0 has residual
    hooks: what ``pos_slice`` slices (not a cross-attention, nor calls over other tokens, nor
    scores with folds x batch rows)."""
    model = table.get(name)
    try:
        layout = model.layout
    except LayoutError:
        return False
    layers = range(model.cfg.n_layers)
    folds = getattr(model, "folds_of", lambda layer: 1)
    return "blocks.0.hook_resid_pre" in model.hook_dict and all(
        table.layout_of(model, layer) == layout and folds(layer) == 1 for layer in layers
    )


def _pre_ln(name: str) -> bool:
    return table.get(name).cfg.norm_position != "post"


TIERS = tuple(table.names())
"""Every model: the hook points' own machinery."""
WEIGHTED = tuple(n for n in table.providing(SPLIT_QKV, TL_WEIGHTS) if _stacked(n))
"""The models with TransformerLens weights, split q/k/v inputs and a shared stack of emg_lens
blocks: the optional hook points and their flags."""
ATTACHED = tuple(table.providing(ATTENTION_HOOKS, lacking=(SPLIT_QKV,)))
"""The models whose attention runs in their own code: the flags refused by name."""
SLICEABLE = tuple(n for n in table.providing(ATTENTION_HOOKS) if _one_layout(n))
"""The models whose every attention call sees the layout's tokens: ``pos_slice``."""
PRE_LN = tuple(n for n in table.providing(LAYERWISE) if _stacked(n) and _pre_ln(n))
"""The pre-LN layer-by-layer models: TransformerLens's residual decompositions (a post-LN
stream is no sum of its components)."""
PATCHABLE = tuple(n for n in PRE_LN if provides(table.get(n), SPLIT_QKV))
"""The pre-LN models with split q/k/v inputs: TransformerLens 4's direct path patching."""


def get_model(name: str) -> torch.nn.Module:
    """The session's model ``name``, hooks removed and every hook flag off."""
    return table.get(name)


@pytest.fixture
def tier_model(request):
    """``get_model(request.param)``, cleaned again afterwards."""
    model = get_model(request.param)
    yield model
    get_model(request.param)


def probe_hook(model) -> str:
    """A hook point inside the model that gradients reach: its residual stream, else its
    attention pattern, else its embedding (or its input)."""
    for name in (
        "blocks.0.hook_resid_post",
        "stems.emg.blocks.0.hook_resid_post",
        "blocks.0.attn.hook_pattern",
        "hook_embed",
    ):
        if name in model.hook_dict:
            return name
    return "hook_input"
