"""The models TransformerLens's own tests are ported onto (issue 47, section 1): the rows of the
test models' table (`tests.unit.models.table`, native, converted and attached) each port
applies to, chosen by capability and trait as the contract test chooses its checks
(`table.providing`: declared, no model built at collection). Each model is built once per
session; every test gets it with no hook and every hook flag off, and leaves it so.
"""

from __future__ import annotations

import pytest
import torch

from emg_lens.models.base import ATTENTION_HOOKS, LAYERWISE, SPLIT_QKV, TL_WEIGHTS
from tests.unit.models import table

TIERS = tuple(table.names())
"""Every model: the hook points' own machinery."""
WEIGHTED = tuple(table.providing(SPLIT_QKV, TL_WEIGHTS, table.STACK))
"""The models with TransformerLens weights, split q/k/v inputs and a shared stack of emg_lens
blocks: the optional hook points and their flags."""
ATTACHED = tuple(table.providing(ATTENTION_HOOKS, lacking=(SPLIT_QKV,)))
"""The models whose attention runs in their own code: the flags refused by name."""
SLICEABLE = tuple(table.providing(ATTENTION_HOOKS, table.ONE_LAYOUT))
"""The models whose every attention call sees the layout's tokens: ``pos_slice``."""
PRE_LN = tuple(table.providing(LAYERWISE, table.STACK, table.PRE_LN))
"""The pre-LN layer-by-layer models: TransformerLens's residual decompositions (a post-LN
stream is no sum of its components)."""
PATCHABLE = tuple(table.providing(LAYERWISE, table.STACK, table.PRE_LN, SPLIT_QKV))
"""The pre-LN models with split q/k/v inputs: TransformerLens 4's direct path patching."""
NORMED = tuple(table.providing(LAYERWISE, table.STACK, table.PRE_LN, table.FINAL_NORM))
"""The pre-LN models with a final norm: ``apply_ln`` applies it."""
UNEMBEDDED = tuple(n for n in NORMED if table.UNEMBEDDING in table.traits(n))
"""The pre-LN models whose classifier is a TransformerLens unembedding after a final norm:
upstream's logit attributions."""


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
