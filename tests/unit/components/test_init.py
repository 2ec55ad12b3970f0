"""The config's initialisation written once (issue 58): `init_parameter`'s rule, each
`ConfigInit` module's ``reset_parameters`` drawing its own parameters by it, and the torch
layers a converted model builds, which draw as torch's while torch builds them and by the
rule after."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emg_lens import EncoderConfig
from emg_lens.components import MLP, Attention, ConfigInit, HeadStructure, TransformerBlock
from emg_lens.components.init import (
    ConfigConv1d,
    ConfigConv2d,
    ConfigEmbedding,
    ConfigGroupNorm,
    ConfigLayerNorm,
    ConfigLinear,
    init_parameter,
)
from emg_lens.errors import ConfigError

STD = 0.5


@pytest.mark.parametrize(
    ("name", "shape", "want"),
    [
        ("b_Q", (4, 8), 0.0),
        ("b", (8,), 0.0),
        ("bias", (8,), 0.0),
        ("w", (8,), 1.0),
        ("weight", (8,), 1.0),  # a norm's
    ],
)
def test_biases_are_zero_and_norm_weights_one(name, shape, want):
    param = torch.randn(shape)
    init_parameter(name, param, STD)
    assert param.eq(want).all()


@pytest.mark.parametrize("name", ["W_Q", "W_E", "cls_token", "weight", "position_embedding"])
def test_everything_else_is_drawn_from_a_normal_of_the_given_spread(name):
    param = torch.empty(200, 50)
    torch.manual_seed(0)
    init_parameter(name, param, STD)
    assert abs(param.mean().item()) < 0.01 and abs(param.std().item() - STD) < 0.01


def test_a_block_resets_each_of_its_modules_own_parameters_from_its_config():
    cfg = EncoderConfig.preset("tiny", seed=0, init_range=STD, qk_norm=True)
    block = TransformerBlock(cfg, 0)
    with torch.no_grad():
        for param in block.parameters():
            param.fill_(7.0)
    owners = [m for m in block.modules() if isinstance(m, ConfigInit)]
    owned = {id(p) for m in owners for p in m.parameters(recurse=False)}
    assert owned == {id(p) for p in block.parameters()}  # every parameter has its reset
    for module in owners:
        module.reset_parameters()
    params = dict(block.named_parameters())
    assert params["ln1.w"].eq(1).all() and params["attn.q_norm.w"].eq(1).all()
    assert params["attn.b_Q"].eq(0).all() and params["mlp.b_out"].eq(0).all()
    drawn = torch.cat([params[k].flatten() for k in params if k.rsplit(".", 1)[1][:2] == "W_"])
    assert abs(drawn.std().item() - STD) < 0.03


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: ConfigLinear(6, 4, init_std=STD), lambda: nn.Linear(6, 4)),
        (lambda: ConfigConv1d(1, 4, 3, init_std=STD), lambda: nn.Conv1d(1, 4, 3)),
        (lambda: ConfigConv2d(2, 4, (1, 3), init_std=STD), lambda: nn.Conv2d(2, 4, (1, 3))),
        (lambda: ConfigGroupNorm(2, 4, init_std=STD), lambda: nn.GroupNorm(2, 4)),
        (lambda: ConfigLayerNorm(4, init_std=STD), lambda: nn.LayerNorm(4)),
        (lambda: ConfigEmbedding(9, 4, init_std=STD), lambda: nn.Embedding(9, 4)),
    ],
)
def test_a_config_layer_is_built_as_torchs_and_resets_by_the_rule(ours, theirs):
    torch.manual_seed(0)
    layer = ours()
    after_ours = torch.rand(3)
    torch.manual_seed(0)
    reference = theirs()
    after_theirs = torch.rand(3)
    assert isinstance(layer, type(reference))
    assert layer.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(layer.parameters(), reference.parameters()))
    assert torch.equal(after_ours, after_theirs)  # the same draws while building
    with torch.no_grad():
        for param in layer.parameters():
            param.fill_(7.0)
    layer.reset_parameters()
    for name, param in layer.named_parameters():
        if name == "bias":
            assert param.eq(0).all()
        elif param.ndim == 1:
            assert param.eq(1).all()
        else:
            assert param.ne(7).all() and param.abs().max() < 6 * STD


def test_a_head_structure_with_rotary_positions_and_an_mlp_without_a_width_are_named():
    rotary = EncoderConfig.preset("tiny", seed=0, positional_embedding_type="rotary")
    with pytest.raises(ConfigError, match="a head structure is not supported with rotary"):
        Attention(rotary).set_structure([HeadStructure((0, 4))], 7)
    cfg = EncoderConfig.preset("tiny", seed=0)
    cfg.d_mlp = None  # a config changed after it was checked (None is filled in on creation)
    with pytest.raises(ConfigError, match=r"EncoderConfig\.d_mlp must be an int >= 1 for an MLP"):
        MLP(cfg)


def test_attention_keeps_a_head_structure_zero_where_heads_do_not_read_or_write():
    cfg = EncoderConfig.preset("tiny", seed=0)
    attn = Attention(cfg)
    attn.set_structure([HeadStructure((0, 2), (0, 8), (8, 16)), HeadStructure((2, 4))], 7)
    attn.reset_parameters()
    assert attn.W_Q[:2, 8:].eq(0).all() and attn.W_V[:2, :8].ne(0).all()
    assert attn.W_O[:2, :, :8].eq(0).all() and attn.W_O[:2, :, 8:].ne(0).all()
    assert attn.W_K[2:].ne(0).all()  # heads without a structure read everything
