"""Softmax attention found and cut with plain torch, independently of emg_lens's `attach`
(issue 75): a `TorchFunctionMode` that follows which tensors depend on the model's input and
counts, in call order, every ``scaled_dot_product_attention``, every
``F.multi_head_attention_forward`` (``nn.MultiheadAttention``) and every softmax over
*content scores*: a product (``matmul``, ``bmm``, ``einsum``, ``@``) of two tensors, neither a
parameter as it stands, at least one depending on the input (a learned query expanded over
the batch reads keys that do), or what an elementwise or reshaping op made of one (scaling,
masking, a bias added; `KEEPS_SCORES`). A softmax over features (BIOT's linear attention),
over scores of learned parameters and electrode positions alone (DANCE's channel merger) or
over class logits is none.

Given cuts (``{call index: bool [query, key], True = cut}``), the same mode sets -inf there
before that call's softmax (SDPA and ``nn.MultiheadAttention``: added to their own mask, a
causal flag turned into that mask): the model's own forward, masked without emg_lens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

PRODUCTS = {
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.bmm,
    torch.Tensor.bmm,
    torch.einsum,
    torch.baddbmm,
}
SOFTMAXES = {torch.softmax, torch.Tensor.softmax, F.softmax}
KEEPS_SCORES = set(  # what an op of these makes of scores is scores still
    [
        "add",
        "sub",
        "mul",
        "div",
        "masked_fill",
        "where",
        "clamp",
        "nan_to_num",
        "to",
        "float",
        "type_as",
        "clone",
        "contiguous",
        "transpose",
        "permute",
        "reshape",
        "view",
        "flatten",
        "unflatten",
        "squeeze",
        "unsqueeze",
        "expand",
        "repeat",
        "__getitem__",
        "__add__",
        "__radd__",
        "__sub__",
        "__mul__",
        "__rmul__",
        "__truediv__",
        "__iadd__",
        "__imul__",
        "__itruediv__",
        "add_",
        "mul_",
        "div_",
        "masked_fill_",
    ]
)


def _tensors(*values) -> list[torch.Tensor]:
    return [v for v in tree_flatten(values)[0] if isinstance(v, torch.Tensor)]


def _additive(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=like.dtype).masked_fill(~mask, float("-inf"))


class SoftmaxAttention(TorchFunctionMode):
    """Records ``calls`` (kind, scores' last two sizes) during one forward on ``x``."""

    def __init__(self, x: torch.Tensor, cuts: dict[int, torch.Tensor] | None = None):
        super().__init__()
        self.dependent = {id(x): x}  # id -> tensor (kept alive, so ids are not reused)
        self.scores: dict[int, torch.Tensor] = {}
        self.cuts = cuts or {}
        self.calls: list[tuple[str, int, int]] = []

    def _cut(self, n_query: int, n_key: int, like: torch.Tensor) -> torch.Tensor | None:
        cut = self.cuts.get(len(self.calls))
        if cut is None:
            return None
        assert cut.shape == (n_query, n_key), (len(self.calls), cut.shape, n_query, n_key)
        return torch.zeros(cut.shape, dtype=like.dtype).masked_fill(cut, float("-inf"))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = _tensors(args, kwargs)
        if func is F.scaled_dot_product_attention:
            q, k = inputs[0], inputs[1]
            cut = self._cut(q.shape[-2], k.shape[-2], q)
            self.calls.append(("sdpa", q.shape[-2], k.shape[-2]))
            if cut is not None:
                names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
                a = {**dict(zip(names, args)), **kwargs}
                own = _additive(a.get("attn_mask"), q)
                if a.pop("is_causal", False):
                    causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
                    own = _additive(causal, q) if own is None else own + _additive(causal, q)
                a["attn_mask"] = cut if own is None else own + cut
                args, kwargs = (), a
        elif func is F.multi_head_attention_forward:
            q, k = inputs[0], inputs[1]
            n_query, n_key = q.shape[0], k.shape[0]  # sequence-first
            cut = self._cut(n_query, n_key, q)
            self.calls.append(("mha", n_query, n_key))
            if cut is not None:
                own = _additive(kwargs.get("attn_mask"), q)
                if own is None and kwargs.get("is_causal"):
                    own = _additive(torch.ones(n_query, n_key, dtype=torch.bool).tril(), q)
                kwargs = {**kwargs, "attn_mask": cut if own is None else own + cut}
                kwargs["is_causal"] = False
        elif func in SOFTMAXES and id(inputs[0]) in self.scores:
            x = inputs[0]
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if dim in (-1, x.ndim - 1):
                cut = self._cut(x.shape[-2], x.shape[-1], x)
                self.calls.append(("softmax", x.shape[-2], x.shape[-1]))
                if cut is not None:
                    args = (x + cut, *args[1:])
        out = func(*args, **kwargs)
        made = [t for t in inputs if id(t) in self.dependent]
        if made:
            product = func in PRODUCTS and not any(isinstance(t, nn.Parameter) for t in inputs)
            keeps = getattr(func, "__name__", "") in KEEPS_SCORES
            keeps = keeps and any(id(t) in self.scores for t in inputs)
            for t in _tensors(out):
                self.dependent[id(t)] = t
                if product or keeps:
                    self.scores[id(t)] = t
        return out


def attention_calls(
    model: torch.nn.Module, x: torch.Tensor, **kwargs
) -> list[tuple[str, int, int]]:
    """``(kind, n_query, n_key)`` of each softmax attention call of ``model(x)``, in order."""
    mode = SoftmaxAttention(x)
    with torch.no_grad(), mode:
        model(x, **kwargs)
    return mode.calls


def masked_forward(
    model: torch.nn.Module, x: torch.Tensor, cuts: dict[int, torch.Tensor], **kwargs
) -> torch.Tensor:
    """``model(x)`` with ``cuts`` set to -inf in those attention calls' scores (see above)."""
    mode = SoftmaxAttention(x, cuts)
    with torch.no_grad(), mode:
        return model(x, **kwargs)
