"""A weight map to another library's state dict as one table read both ways
(docs/ARCHITECTURE.md, converted models; TinyMyo's BioFoundation format too): each `Row` names an
emg_lens key, the source's key and a `Conversion` that knows its own inverse, and `KeyTable`
applies the table source -> emg_lens (`KeyTable.to_ours`, through `StateBuilder`, which checks
each tensor's shape) and back (`KeyTable.to_theirs`, the state dict the source's class loads).

Keys are templates: ``{l}`` stands for a layer index and ``{*}`` for the rest of a key. The
table is matched against the emg_lens model's own keys, so a row whose emg_lens key the model
lacks (a bias of a layer built without one) is no part of its map in either direction; a row
may hold part of a packed source tensor or one block of its emg_lens tensor (`Row`).

>>> from emg_lens.models import Attention
>>> from emg_lens.config import EncoderConfig
>>> attn = Attention(EncoderConfig.preset("tiny"))  # 4 heads of 4 dims, d_model 16
>>> table = KeyTable([*qkv_rows("", "in_proj_weight", n_heads=4),
...                   *qkv_rows("", "in_proj_bias", n_heads=4, bias=True),
...                   Row("W_O", "out_proj.weight", HeadsOut(4)), Row("b_O", "out_proj.bias")])
>>> mha = torch.nn.MultiheadAttention(16, 4)
>>> state = StateBuilder(attn, "MultiheadAttention")
>>> table.to_ours(mha.state_dict(), state, attn.state_dict())
>>> state.load()
>>> back = table.to_theirs(attn.state_dict())
>>> all(torch.equal(back[key], value) for key, value in mha.state_dict().items())
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from emg_lens.errors import ConversionError, describe


class StateBuilder:
    """An emg_lens state dict filled entry by entry from a source model's tensors, checked
    against the model it is for: `put` (shape checked, naming the source tensor), then
    `load` (every entry present, none surplus) into the model.

    >>> from emg_lens.config import EncoderConfig
    >>> from emg_lens.models import MLP
    >>> mlp = MLP(EncoderConfig.preset("tiny"))
    >>> state = StateBuilder(mlp, "MLP")
    >>> state.put("W_in", torch.zeros(32, 16).T, "fc1.weight")
    >>> state.put("W_out", torch.zeros(16, 16), "fc2.weight")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConversionError: MLP: fc2.weight (torch.float32 [16, 16]) does not fit W_out, [32, 16]...
    """  # noqa: E501

    def __init__(self, model: nn.Module, what: str):
        self.model = model
        self.what = what
        self.expected = model.state_dict()
        self.state: dict[str, torch.Tensor] = {}
        self.source: dict[str, str] = {}

    def put(
        self,
        name: str,
        tensor: torch.Tensor,
        source: str,
        block: tuple[slice, ...] | None = None,
    ) -> None:
        """Set entry ``name`` from ``tensor`` (the source model's ``source``), shape checked;
        with ``block``, only those slices of it (the rest zero until another block fills
        them)."""
        want = self.expected[name]  # `KeyTable.to_ours` puts only the model's own entries
        shape = want.shape if block is None else want[block].shape
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(shape):
            where = name if block is None else f"{name}[{_slices(block)}]"
            raise ConversionError(
                f"{self.what}: {source} ({describe(tensor)}) does not fit {where}, {list(shape)} "
                "for the architecture read off the model's layers and configuration"
            )
        value = tensor.detach().to(want.dtype)
        if block is None:
            self.state[name], self.source[name] = value.clone(), source
            return
        if name not in self.state:
            self.state[name], self.source[name] = torch.zeros_like(want), source
        else:
            self.source[name] += f" + {source}"
        self.state[name][block] = value

    def load(self, keep: Mapping[str, torch.Tensor] | None = None) -> None:
        """Load the entries (and ``keep``: entries taken as they are, such as a user's own
        modules) into the model, refusing a missing or surplus one by name."""
        state = {**self.state, **(keep or {})}
        missing = sorted(set(self.expected) - set(state))
        if missing:
            raise ConversionError(f"{self.what}: no source weight for {missing}")
        self.model.load_state_dict(state, strict=True)


def _slices(block: tuple[slice, ...]) -> str:
    return ", ".join(f"{s.start or ''}:{'' if s.stop is None else s.stop}" for s in block)


@runtime_checkable
class Conversion(Protocol):
    """A source tensor -> its emg_lens form (`forward`) and back (`reverse`), exactly."""

    def forward(self, theirs: torch.Tensor) -> torch.Tensor: ...

    def reverse(self, ours: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class Same:
    """The tensor as it is (an embedding, a norm's weight, a module kept whole)."""

    def forward(self, theirs: torch.Tensor) -> torch.Tensor:
        return theirs

    def reverse(self, ours: torch.Tensor) -> torch.Tensor:
        return ours


@dataclass(frozen=True)
class Transpose:
    """A linear layer's ``[out, in]`` weight as TransformerLens's ``[in, out]`` (``W_in``,
    ``W_out``, ``W_U``)."""

    def forward(self, theirs: torch.Tensor) -> torch.Tensor:
        return theirs.T

    def reverse(self, ours: torch.Tensor) -> torch.Tensor:
        return ours.T


@dataclass(frozen=True)
class HeadsIn:
    """A q/k/v projection ``[n_heads * d_head, d_model]`` (torch's ``[out, in]``, rows head
    major) as TransformerLens's ``[n_heads, d_model, d_head]``.

    >>> W = torch.arange(24.0).view(6, 4)  # 2 heads x 3 dims, d_model 4
    >>> HeadsIn(2).forward(W)[1, :, 0].tolist() == W[3].tolist()  # head 1's first dim: row 3
    True
    """

    n_heads: int

    def forward(self, theirs: torch.Tensor) -> torch.Tensor:
        return theirs.view(self.n_heads, -1, theirs.shape[-1]).transpose(1, 2).contiguous()

    def reverse(self, ours: torch.Tensor) -> torch.Tensor:
        return ours.transpose(1, 2).reshape(-1, ours.shape[1])


@dataclass(frozen=True)
class HeadsOut:
    """An output projection ``[d_model, n_heads * d_head]`` as ``W_O [n_heads, d_head,
    d_model]``."""

    n_heads: int

    def forward(self, theirs: torch.Tensor) -> torch.Tensor:
        return theirs.T.reshape(self.n_heads, -1, theirs.shape[0]).contiguous()

    def reverse(self, ours: torch.Tensor) -> torch.Tensor:
        return ours.reshape(-1, ours.shape[-1]).T


@dataclass(frozen=True)
class HeadBias:
    """A q/k/v bias ``[n_heads * d_head]`` as ``[n_heads, d_head]``."""

    n_heads: int

    def forward(self, theirs: torch.Tensor) -> torch.Tensor:
        return theirs.view(self.n_heads, -1)

    def reverse(self, ours: torch.Tensor) -> torch.Tensor:
        return ours.flatten()


@dataclass(frozen=True)
class Unsqueezed:
    """A tensor with singleton ``dims`` (a kernel of width 1, a token ``[1, 1, d]``) as one
    without them, then transposed where ``transpose`` (a convolution's ``[out, in, 1]`` as
    ``[in, out]``).

    >>> conv = Unsqueezed((2,), transpose=True)
    >>> conv.forward(torch.zeros(5, 3, 1)).shape, conv.reverse(torch.zeros(3, 5)).shape
    (torch.Size([3, 5]), torch.Size([5, 3, 1]))
    """

    dims: Sequence[int]
    transpose: bool = False

    def forward(self, theirs: torch.Tensor) -> torch.Tensor:
        for dim in sorted(self.dims, reverse=True):
            theirs = theirs.squeeze(dim)
        return theirs.T if self.transpose else theirs

    def reverse(self, ours: torch.Tensor) -> torch.Tensor:
        ours = ours.T if self.transpose else ours
        for dim in sorted(self.dims):
            ours = ours.unsqueeze(dim)
        return ours


SAME = Same()


@dataclass(frozen=True)
class Row:
    """One weight of the map: emg_lens key ``ours``, source key ``theirs`` (templates: see
    the module docstring), the `Conversion` between them, and where a row holds only part of
    either side, ``part=(i, n)`` (chunk ``i`` of ``n`` of the source tensor, dim 0) and
    ``block`` (the slices of the emg_lens tensor the row fills; zero elsewhere)."""

    ours: str
    theirs: str
    convert: Conversion = SAME
    part: tuple[int, int] | None = None
    block: tuple[slice, ...] | None = None

    def source(self, key: str) -> str:
        """How an error names the source tensor of this row at source key ``key``."""
        if self.part is None:
            return key
        i, n = self.part
        return f"{key}[{'qkv'[i] if n == 3 else f'{i}/{n}'}]"


def qkv_rows(ours: str, theirs: str, n_heads: int, *, bias: bool = False, **kw) -> list[Row]:
    """The three rows of a packed q/k/v weight (``bias``: the packed bias) under attention
    ``ours`` (``blocks.{l}.attn``)."""
    name, convert = ("b", HeadBias(n_heads)) if bias else ("W", HeadsIn(n_heads))
    return [
        Row(_key(ours, f"{name}_{n}"), theirs, convert, part=(i, 3), **kw)
        for i, n in enumerate("QKV")
    ]


def linear_rows(ours: str, theirs: str, w: str = "W_in", b: str = "b_in") -> list[Row]:
    """A linear layer ``theirs`` (``.weight [out, in]``, ``.bias``) as ``ours.{w}``,
    ``ours.{b}``."""
    return [
        Row(_key(ours, w), f"{theirs}.weight", Transpose()),
        Row(_key(ours, b), f"{theirs}.bias"),
    ]


def norm_rows(*pairs: tuple[str, str]) -> list[Row]:
    """Each (emg_lens LayerNorm, source LayerNorm) as ``.w`` <- ``.weight``, ``.b`` <-
    ``.bias``."""
    return [
        Row(f"{ours}.{mine}", f"{theirs}.{their}")
        for ours, theirs in pairs
        for mine, their in (("w", "weight"), ("b", "bias"))
    ]


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"(\{l\}|\{\*\})", template)
    regex = "".join(
        "(?P<l>[0-9]+)" if p == "{l}" else "(?P<rest>.+)" if p == "{*}" else re.escape(p)
        for p in parts
    )
    return re.compile(regex + r"\Z")


class KeyTable:
    """Rows applied both ways (see the module docstring)."""

    def __init__(self, rows: Iterable[Row]):
        self.rows = list(rows)
        self._patterns = [_pattern(row.ours) for row in self.rows]

    def matches(self, key: str) -> list[tuple[Row, str]]:
        """The rows of emg_lens key ``key``, each with its source key."""
        out = []
        for row, pattern in zip(self.rows, self._patterns):
            found = pattern.match(key)
            if found:
                groups = found.groupdict()
                theirs = row.theirs.replace("{l}", groups.get("l") or "")
                out.append((row, theirs.replace("{*}", groups.get("rest") or "")))
        return out

    def to_ours(
        self, theirs: Mapping[str, torch.Tensor], state: StateBuilder, keys: Iterable[str]
    ) -> None:
        """Put every emg_lens entry of ``keys`` (the model's own, by default its state dict's)
        from the source's state dict ``theirs`` into ``state``; a missing source key is a
        `ConversionError` naming it."""
        for key in keys:
            for row, their_key in self.matches(key):
                if their_key not in theirs:
                    raise ConversionError(
                        f"{state.what}: the source has no {their_key}, from which {key} is read"
                    )
                tensor = row.convert.forward(_chunk(theirs[their_key], row.part))
                state.put(key, tensor, row.source(their_key), block=row.block)

    def load(self, theirs: Mapping[str, torch.Tensor], model: nn.Module, what: str) -> None:
        """Fill every entry of ``model``'s state dict from the source's state dict ``theirs``
        (`to_ours`, then `StateBuilder.load`); ``what`` names the conversion in errors."""
        state = StateBuilder(model, what)
        self.to_ours(theirs, state, state.expected)
        state.load()

    def to_theirs(self, ours: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The source's state dict from the emg_lens entries ``ours`` (fresh contiguous
        tensors); an entry no row maps is a `ConversionError`."""
        parts: dict[str, dict[tuple[int, int], torch.Tensor]] = {}
        for key, tensor in ours.items():
            rows = self.matches(key)
            if not rows:
                raise ConversionError(f"no row of the key table maps {key}")
            for row, their_key in rows:
                value = tensor if row.block is None else tensor[row.block]
                index, n = row.part or (0, 1)
                parts.setdefault(their_key, {})[index, n] = row.convert.reverse(value)
        return {key: _joined(key, chunks) for key, chunks in parts.items()}


def _chunk(tensor: torch.Tensor, part: tuple[int, int] | None) -> torch.Tensor:
    return tensor if part is None else tensor.chunk(part[1], dim=0)[part[0]]


def _joined(key: str, chunks: Mapping[tuple[int, int], torch.Tensor]) -> torch.Tensor:
    """The chunks ``(i, n)`` of one source key concatenated; all ``n`` must be there."""
    order = sorted(chunks)
    n = order[0][1]
    if order != [(i, n) for i in range(n)]:
        raise ConversionError(f"{key}: the key table gives its chunks {order}, not all {n}")
    tensor = torch.cat([chunks[i] for i in order]) if n > 1 else chunks[order[0]]
    return tensor.detach().clone().contiguous()
