"""``model.W_pos``, TransformerLens's model-level alias of ``pos_embed.W_pos`` (legacy
``HookedTransformer.W_pos``; its tests read ``model.W_pos`` as ``[n_ctx, d_model]``, e.g.
TransformerLens ``tests/unit/test_svd_interpreter.py`` and the bridge's weight-property tests):
the same tensor where a model learns one position table, a refusal naming why elsewhere."""

from __future__ import annotations

import pytest
import torch

from emg_lens.errors import UnsupportedFeatureError
from tests.unit.models.tl_port.conftest import get_model


def test_w_pos_is_pos_embed_w_pos():
    model = get_model("isonet")
    assert model.W_pos is model.pos_embed.W_pos
    assert model.W_pos.shape == (model.cfg.n_ctx, model.cfg.d_model)
    _, cache = model.run_with_cache(model.example_input(2))
    torch.testing.assert_close(cache["hook_pos_embed"], model.W_pos.expand(2, -1, -1))


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("tinymyo", "rotary"),
        ("hierarchical", r"stems\[modality\]\.pos_embed\.W_pos"),
        ("braindecode_labram", "computed, not one learned table"),
        ("attached_qkv", "attached model"),
    ],
)
def test_models_without_a_position_table_say_why(name, why):
    with pytest.raises(UnsupportedFeatureError, match=rf"has no W_pos .*{why}"):
        _ = get_model(name).W_pos
