"""Weight-based channel circuits, from the weights alone, for one layer and its heads:
`qk_circuit`, the attention score between every pair of channel tokens ("which channel wants
to read which"), and `ov_circuit`, what a head writes into the class logits when it reads a
channel's token. Both read each token's data-free embedding (a window of zeros) through the
layer's ``ln1`` and weights, so at layer 0 they are exactly what the model computes on a zero
signal, above it the direct path. What the numbers mean, and how they differ from
TransformerLens's full circuits: docs/guide/notebook.md, "In a notebook".

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
>>> qk = qk_circuit(model, 0)
>>> qk.columns.tolist()
['layer', 'head', 'query', 'key', 'query_group', 'key_group', 'score']
>>> len(qk) == model.cfg.n_heads * 7 * 7  # 4 heads, CLS + 6 channels as queries and keys
True
>>> ov_circuit(model, 1, head=2).columns.tolist()
['layer', 'head', 'channel', 'group', 'class', 'logit']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from einops import einsum
from jaxtyping import Float

from emg_lens.components.layer_norm import LayerNorm
from emg_lens.errors import IndexOutOfRangeError, check_choice, check_int, checked
from emg_lens.inputs import check_model
from emg_lens.inspect.flow import token_bins
from emg_lens.models.base import TL_WEIGHTS, require

LEVELS = ("channel", "group")


@torch.no_grad()
@checked
def token_embeddings(model: Any, *, writes: bool = False) -> Float[torch.Tensor, "pos d_model"]:
    """Every token's data-free embedding (see the module docstring): what enters ``blocks.0``
    for a window of zeros, from the embedding weights, as the model gives it
    (``model.data_free_tokens``). ``writes=True`` asks for an identity that survives without
    RoPE (what an OV circuit reads); a model whose tokens have none raises
    `UnsupportedFeatureError` saying why.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> e = token_embeddings(model)
    >>> e.shape, torch.allclose(e, model.embed_signals(torch.zeros(1, 6, 8))[0])
    (torch.Size([7, 16]), True)
    """
    check_model(model)
    require(model, TL_WEIGHTS, "token_embeddings")
    return model.data_free_tokens(writes=writes)


@torch.no_grad()
@checked
def qk_circuit(
    model: Any, layer: int, head: int | None = None, *, level: str = "channel"
) -> pd.DataFrame:
    """The attention score between the data-free embeddings of every pair of channels
    (``level="channel"``, the CLS token included) or token groups (``"group"``), for ``head``
    of ``layer`` (``None``: every head): scaled and rotated as ``hook_attn_scores``, before
    the softmax. Rows: ``layer, head, query, key, query_group, key_group, score`` (at group
    level ``query``/``key`` are the groups). The direct path only: see the module docstring.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> table = qk_circuit(model, 0, head=1, level="group")
    >>> table[["query", "key"]].head(3).values.tolist()
    [['cls', 'cls'], ['cls', 'emg'], ['cls', 'acc']]
    """
    heads = _heads(model, layer, head)
    check_choice(level, LEVELS, "level")
    x = _ln1(model, layer, token_embeddings(model))
    attn = model.blocks[layer].attn
    q = einsum(x, model.W_Q[layer], "pos d, head d k -> pos head k") + model.b_Q[layer]
    k = einsum(x, model.W_K[layer], "pos d, head d k -> pos head k") + model.b_K[layer]
    if attn.rotary is not None:  # rotated at the token index, as the model does
        q, k = attn.rotary(q[None])[0], attn.rotary(k[None])[0]
    scores = einsum(q / attn.attn_scale, k, "qpos head k, kpos head k -> head qpos kpos")
    member, names, group_of = _grouped(model, level)
    grid = einsum(member, scores[heads].double().cpu(), member, "q a, h q k, k b -> h a b")
    h, a, b = np.indices(grid.shape)
    return pd.DataFrame(
        {
            "layer": layer,
            "head": np.asarray(heads)[h.ravel()],
            "query": np.asarray(names)[a.ravel()],
            "key": np.asarray(names)[b.ravel()],
            "query_group": [group_of[names[i]] for i in a.ravel()],
            "key_group": [group_of[names[i]] for i in b.ravel()],
            "score": grid.numpy().ravel(),
        }
    )


@torch.no_grad()
@checked
def ov_circuit(
    model: Any, layer: int, head: int | None = None, *, return_type: str = "logits"
) -> pd.DataFrame:
    """What ``head`` of ``layer`` (``None``: every head) writes into each class logit of the
    unembedding ``return_type`` names (IsoNet: ``"logits"``, the CLS head, or
    ``"avg_logits"``) when it reads a channel's data-free embedding, from the weights: rows
    ``layer, head, channel, group, class, logit``: ``(ln1(e) @ W_V[h] + b_V[h]) @ W_O[h]`` read
    by the class direction through ``ln_final``'s linear part, ``centre(w * W_U[:, c])``.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> table = ov_circuit(model, 0, return_type="avg_logits")
    >>> len(table) == model.cfg.n_heads * 7 * model.cfg.n_classes  # heads x tokens x classes
    True
    """
    heads = _heads(model, layer, head)
    x = _ln1(model, layer, token_embeddings(model, writes=True))
    directions = _class_directions(model, return_type)  # [d_model, n_classes]
    values = einsum(x, model.W_V[layer], "pos d, head d k -> head pos k")
    values = values + model.b_V[layer][:, None]
    writes = einsum(values, model.W_O[layer], "head pos k, head k d -> head pos d")
    logits = einsum(writes, directions, "head pos d, d c -> head pos c")
    member, names, group_of = _grouped(model, "channel")
    grid = einsum(member, logits[heads].double().cpu(), "p a, h p c -> h a c")
    h, a, c = np.indices(grid.shape)
    return pd.DataFrame(
        {
            "layer": layer,
            "head": np.asarray(heads)[h.ravel()],
            "channel": np.asarray(names)[a.ravel()],
            "group": [group_of[names[i]] for i in a.ravel()],
            "class": c.ravel(),
            "logit": grid.numpy().ravel(),
        }
    )


def _heads(model: Any, layer: Any, head: Any) -> list[int]:
    """The heads a table covers, after checking the model, ``layer`` and ``head``."""
    check_model(model)
    require(model, TL_WEIGHTS, "a weight circuit (qk_circuit, ov_circuit)")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    where = f"layer (of the model's {n_layers} layers of `blocks`)"
    check_int(layer, where, 0, n_layers - 1, IndexOutOfRangeError)
    if head is None:
        return list(range(n_heads))
    return [check_int(head, "head (None: every head)", 0, n_heads - 1, IndexOutOfRangeError)]


def _ln1(model: Any, layer: int, tokens: torch.Tensor) -> torch.Tensor:
    """``tokens`` through ``blocks[layer].ln1`` as the model applies it, without firing its
    hooks (an identity when the model has no normalisation, or post-LN blocks, whose ``ln1``
    follows the attention)."""
    ln = model.blocks[layer].ln1
    if isinstance(ln, LayerNorm) and model.cfg.norm_position != "post":
        return F.layer_norm(tokens, ln.w.shape, ln.w, ln.b, ln.eps)
    return tokens


def _class_directions(model: Any, return_type: str) -> Float[torch.Tensor, "d_model n_classes"]:
    """The class directions of the ``return_type`` unembedding as seen by the final stream:
    ``W_U`` through ``ln_final``'s centring and weight (its scale depends on the data)."""
    check_choice(return_type, tuple(model.unembed_heads), f"{type(model).__name__} return_type")
    previous = model.unembed_head
    try:  # read W_U of the asked head without leaving the model changed
        model.unembed_head = return_type
        W_U = model.W_U.detach()
    finally:
        model.unembed_head = previous
    ln = model.ln_final
    if not isinstance(ln, LayerNorm):
        return W_U
    scaled = ln.w.detach()[:, None] * W_U
    return scaled - scaled.mean(0, keepdim=True)


def _labels(model: Any, level: str) -> list[str]:
    """Per token: its channel (``ch3``, or ``cls``) or its group."""
    layout = model.layout
    return list(layout.group) if level == "group" else token_bins(layout, "channel")


def _grouped(model: Any, level: str) -> tuple[torch.Tensor, list[str], dict[str, str]]:
    """The tokens' labels at ``level`` (`_labels`) as their membership matrix
    (`_membership`), the labels in order, and the group each label is in."""
    labels = _labels(model, level)
    names = list(dict.fromkeys(labels))
    return _membership(labels), names, dict(zip(labels, model.layout.group))


def _membership(labels: list[str]) -> Float[torch.Tensor, "pos label"]:
    """``[pos, label]`` weights that average the tokens of each distinct label."""
    names = list(dict.fromkeys(labels))
    member = torch.tensor([[lab == n for n in names] for lab in labels], dtype=torch.float64)
    return member / member.sum(0)
