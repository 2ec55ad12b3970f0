"""What is attention in a user's model, and which module is the block around each.

`probe` runs the model once with an `Interceptor` recording every attention call and the
module calls around them; `check_calls`, `find_blocks` and `find_folds` read what it recorded.

A model with lazy modules not yet built (``nn.LazyLinear``, as braindecode builds CBraMod's
classifier without ``n_times``) is probed on a copy: a probe forward would build them, fixing
the user's model to the probe's input size and drawing from torch's global generator.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.overrides import TorchFunctionMode

from emg_lens.errors import ArgumentError, ConversionError, describe
from emg_lens.models.attached.intercept import (
    SOFTMAXES,
    Call,
    Interceptor,
    ModuleTracker,
    Site,
    is_scores_softmax,
)
from emg_lens.models.base import eval_mode

AttentionSpec = type | str | Sequence[type | str] | None


def _path(path: str) -> str:
    return path or "<root>"


def named_modules_of(model: nn.Module, attention: AttentionSpec) -> dict[str, nn.Module] | None:
    """The modules ``attention`` names (path -> module), or None when it is None.

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    >>> list(named_modules_of(net, "0")), list(named_modules_of(net, nn.ReLU))
    (['0'], ['1'])
    >>> named_modules_of(net, "blocks.*.attn")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConversionError: attention='blocks.*.attn' names no module of Sequential; its modules are e.g. '0' (Linear), '1' (ReLU)
    """  # noqa: E501
    if attention is None:
        return None
    single = isinstance(attention, (str, type))
    specs = [attention] if single else list(attention) if isinstance(attention, Sequence) else []
    if not specs or not all(isinstance(s, str | type) for s in specs):
        raise ArgumentError(
            "attention must be a module class, a module-path glob such as 'blocks.*.attn', or a "
            f"list of them, got {describe(attention)}"
        )
    found: dict[str, nn.Module] = {}
    for spec in specs:
        if isinstance(spec, type):
            hits = {p: m for p, m in model.named_modules() if isinstance(m, spec)}
        else:
            hits = {p: m for p, m in model.named_modules() if p and fnmatch.fnmatchcase(p, spec)}
        if not hits:
            examples = [(p, type(m).__name__) for p, m in model.named_modules() if p][:6]
            shown = ", ".join(f"{p!r} ({c})" for p, c in examples)
            what = spec.__name__ if isinstance(spec, type) else repr(spec)
            raise ConversionError(
                f"attention={what} names no module of {type(model).__name__}; its modules are "
                f"e.g. {shown}"
            )
        found.update(hits)
    return found


@dataclass(frozen=True)
class ModuleCall:
    """One call of a module during the probe: the attention calls it holds, ``first`` to
    ``stop - 1``, and the shapes of its first tensor input and output (None: none)."""

    path: str
    first: int
    stop: int
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Probe:
    """What one forward of the model showed: its attention calls in order and its module
    calls, and the output."""

    calls: tuple[Call, ...]
    module_calls: tuple[ModuleCall, ...]
    output: object
    folded: tuple[str, ...] = ()  # nothing named: the modules running a 3-D scores softmax


def _shape(value: object) -> tuple[int, ...] | None:
    """The shape of a module's input or output: a tensor, or a tuple or list of them first."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


class _Recorder(ModuleTracker):
    """A tracker of every module that also records each module call's attention calls."""

    def __init__(self, model: nn.Module, named: dict[str, nn.Module] | None):
        super().__init__(dict(model.named_modules()))
        self.named = named
        self.calls: list[Call] = []
        self.module_calls: list[ModuleCall] = []
        self._open: list[tuple[int, tuple[int, ...] | None]] = []

    def _enter(self, path):
        push = super()._enter(path)

        def hook(module, args):
            push(module, args)
            self._open.append((len(self.calls), _shape(args[0]) if args else None))

        return hook

    def _exit(self, path):
        pop = super()._exit(path)

        def hook(module, args, output):
            pop(module, args, output)
            if self._open:
                first, in_shape = self._open.pop()
                self.module_calls.append(
                    ModuleCall(path, first, len(self.calls), in_shape, _shape(output))
                )

        return hook

    def owner(self, kind: str) -> str:
        """The module a call of ``kind`` belongs to: for a softmax with modules named, the
        innermost named module running; otherwise the innermost running module that is not
        an ``nn.Softmax``."""
        for path in reversed(self.stack):
            if kind == "softmax" and self.named is not None:
                if path in self.named:
                    return path
            elif not isinstance(self.modules[path], nn.Softmax):
                return path
        return ""

    def softmax_here(self) -> bool:
        if self.named is None:
            return True
        return any(path in self.named for path in self.stack)

    def record(self, call: Call) -> None:
        self.calls.append(call)


class _Folded(TorchFunctionMode):
    """Where nothing is named: the modules running a softmax over the last axis of a 3-D
    tensor (``[batch * heads, query, key]``, heads folded into the batch), which is an
    attention only inside a module ``attention=`` names; said when no attention is found."""

    def __init__(self, recorder: _Recorder):
        super().__init__()
        self.recorder = recorder
        self.owners: dict[str, None] = {}  # in the order they were met

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = args[0] if args else kwargs.get("input")
        three = func in SOFTMAXES and getattr(x, "ndim", 0) == 3
        if three and is_scores_softmax(args, kwargs, folded=True):
            self.owners.setdefault(self.recorder.owner("mha"), None)
        return func(*args, **kwargs)


def unbuilt(model: nn.Module) -> bool:
    """Whether ``model`` holds a lazy module not yet built (its parameters' shapes are fixed by
    its first call).

    >>> unbuilt(nn.LazyLinear(2)), unbuilt(nn.Linear(2, 2))
    (True, False)
    """
    return any(
        isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in model.modules()
    )


def torch_resets(model: nn.Module) -> nn.Module:
    """``model``, each of torch's modules in it that names its reset ``_reset_parameters``
    (``nn.MultiheadAttention``'s ``in_proj_weight``, ``in_proj_bias``) given it as
    ``reset_parameters`` too, on the instance: the name TransformerLens's random-init control
    (``tools.analysis.reinitialized``) calls, so it redraws them as torch draws them.

    >>> mha = torch_resets(nn.MultiheadAttention(4, 2))
    >>> mha.reset_parameters == mha._reset_parameters
    True
    """
    for module in model.modules():
        reset = getattr(module, "_reset_parameters", None)
        own = getattr(module, "reset_parameters", None)
        if type(module).__module__.startswith("torch.") and callable(reset) and not callable(own):
            module.reset_parameters = reset
    return model


def _subject(model: nn.Module) -> nn.Module:
    """What a probe runs: ``model``, or a copy of it while it holds lazy modules not yet built
    (see the module docstring)."""
    return copy.deepcopy(model) if unbuilt(model) else model


def probe(
    model: nn.Module,
    example: torch.Tensor,
    named: dict[str, nn.Module] | None,
    site: Callable[[int, Call], Site | None] | None = None,
) -> Probe:
    """Run ``model(example)`` once (no gradients), recording its attention calls (see the
    module docstring); ``site(layer, call)``, where given, says what each call does beyond
    the original (its hooks), as in an attached model's forward. A model holding lazy
    modules not yet built runs as a copy (see the module docstring)."""
    return _probe(_subject(model), example, named, site)


def _probe(model, example, named, site=None) -> Probe:
    recorder = _Recorder(model, named)

    def record(call: Call) -> Site | None:
        recorder.record(call)
        return None if site is None else site(len(recorder.calls) - 1, call)

    mode = Interceptor(
        record,
        softmax_here=recorder.softmax_here,
        where=recorder.owner,
        folded=named is not None,  # a 3-D softmax counts only inside the modules named
    )
    folded = _Folded(recorder) if named is None else contextlib.nullcontext()
    with torch.no_grad(), recorder.track(), mode, folded:
        output = model(example)

    def unnamed(path: str) -> bool:  # an attention's first: its path or class names one
        return "att" not in f"{path}{type(recorder.modules.get(path)).__name__}".lower()

    owners = tuple(sorted(getattr(folded, "owners", ()), key=unnamed))
    return Probe(tuple(recorder.calls), tuple(recorder.module_calls), output, owners)


def check_calls(model: nn.Module, found: Probe, named: dict[str, nn.Module] | None) -> None:
    """Refuse a model with no attention call, and (nothing named) a module that calls a 4-D
    softmax more than once per call: say what ``attention=`` to give."""
    name = type(model).__name__
    if not found.calls:
        where = (
            f"inside the modules attention= names ({', '.join(map(_path, named))})"
            if named is not None
            else "anywhere in its forward"
        )
        raise ConversionError(
            f"{name} computes no attention {where} (no scaled_dot_product_attention, "
            "nn.MultiheadAttention or softmax over [batch, head, query, key] scores ran on the "
            "example input): only softmax attention over tokens can be attached" + _folded(found)
        )
    if named is not None:
        return
    per_call: Counter[str] = Counter()
    softmax_owners = {c.module for c in found.calls if c.kind == "softmax"}
    for mc in found.module_calls:
        if mc.path in softmax_owners:
            inside = [c for c in found.calls[mc.first : mc.stop] if c.kind == "softmax"]
            mine = sum(c.module == mc.path for c in inside)
            per_call[mc.path] = max(per_call[mc.path], mine)
    ambiguous = sorted(p for p, n in per_call.items() if n > 1)
    if ambiguous:
        path = ambiguous[0]
        cls = type(dict(model.named_modules())[path]).__name__
        raise ConversionError(
            f"{_path(path)} ({cls}) calls a softmax over a 4-D tensor {per_call[path]} times in "
            "one call: name the modules that compute attention, e.g. attach(..., "
            f"attention={path!r}) (or attention={cls}) if each of them is"
        )


def _folded(found: Probe) -> str:
    """What a refusal adds where a 3-D softmax ran outside any named module."""
    if not found.folded:
        return ""
    shown = ", ".join(repr(p) for p in found.folded[:4])
    more = f" and {len(found.folded) - 4} more" if len(found.folded) > 4 else ""
    return (
        f". A softmax over a 3-D tensor [batch * heads, query, key] ran in {shown}{more}; it "
        "counts as attention only inside a module named by attention=: if it is one, give "
        f"attach(..., attention={found.folded[0]!r}) or a glob naming them all"
    )


@dataclass(frozen=True)
class Block:
    """The module around attention call ``layer`` whose input and output are the residual
    stream: its ``path``, and ``seq_first`` when the stream is ``[token, batch, d_model]``."""

    layer: int
    path: str
    seq_first: bool


def find_blocks(found: Probe, batch: int, n_tokens: Sequence[int]) -> dict[int, Block]:
    """For each attention call ``L`` (``n_tokens[L]`` query tokens), the module call that
    holds that call alone, is the module running it or one around it (not the root, not an
    ``nn.MultiheadAttention``, whose input is q, k and v) and maps ``[batch, n_tokens[L], d]``
    (or ``[n_tokens[L], batch, d]``) to the same shape: of those, the outermost element of a
    stack (a path ending in an index, ``blocks.3``, ``encoder.layers.0``), else the outermost;
    calls with none are left out."""
    blocks: dict[int, Block] = {}
    for layer, call in enumerate(found.calls):
        owner = call.module
        fits: list[Block] = []
        for mc in found.module_calls:  # inner calls close first: outer ones come later
            if not mc.path or mc.first != layer or mc.stop != layer + 1:
                continue
            inside = owner.startswith(mc.path + ".") or (mc.path == owner and call.kind != "mha")
            if not inside:
                continue
            if mc.in_shape is None or mc.in_shape != mc.out_shape or len(mc.in_shape) != 3:
                continue
            lead = mc.in_shape[:2]
            if lead == (batch, n_tokens[layer]):
                fits.append(Block(layer, mc.path, seq_first=False))
            elif lead == (n_tokens[layer], batch):
                fits.append(Block(layer, mc.path, seq_first=True))
        stacked = [b for b in fits if b.path.rsplit(".", 1)[-1].isdigit()]
        if stacked or fits:
            blocks[layer] = (stacked or fits)[-1]
    return blocks


@dataclass(frozen=True)
class Fold:
    """How an attention call folds independent attention problems into the batch axis of its
    scores (CBraMod's spatial call: one per patch, ``[batch * patches, head, C, C]``).

    ``count``: the problems per input row (1: none folded; None: not known). ``batch_major``:
    True where input row ``b`` owns score rows ``b * count`` to ``b * count + count - 1``,
    False where the probe showed otherwise (ATCNet's heads, folded head-major), None where it
    could not be told.

    >>> Fold(3, True).ordered, Fold(3, False).ordered, Fold(1, True).ordered
    (True, False, True)
    """

    count: int | None
    batch_major: bool | None

    @property
    def ordered(self) -> bool:
        """Whether a mask that differs between input rows or folds can be placed on the
        scores' rows."""
        return self.count is not None and self.batch_major is True


ORDER_ROWS = 2
"""Input rows `find_folds` replaces one at a time to tell a folded call's order: two tell
batch-major (row ``b``'s problems at score rows ``b * count ...``) from every other order."""


def find_folds(
    model: nn.Module,
    example: torch.Tensor,
    named: dict[str, nn.Module] | None,
    calls: Sequence[Call],
) -> tuple[Fold, ...]:
    """Each attention call's `Fold` on ``example`` (the probe's input, whose forward made
    ``calls``). Where a call folds several problems per input row, the model runs again (eval
    mode, no gradients) with one input row replaced: the order is batch-major when replacing
    row ``b`` changes exactly score rows ``b * count`` to ``b * count + count - 1``. Two rows
    tell that order from any other, so the first `ORDER_ROWS` are checked (all where a call's
    batch is not a multiple of the example's).

    >>> from emg_lens.models import PatchAttention
    >>> net = PatchAttention()
    >>> x = torch.randn(2, 4, 8)
    >>> find_folds(net, x, None, probe(net, x, None).calls)
    (Fold(count=2, batch_major=True),)
    """
    batch = example.shape[0]
    counts = [c.batch // batch if c.batch % batch == 0 else None for c in calls]
    folded = {layer: n for layer, n in enumerate(counts) if n is not None and n > 1}
    known = [count for count in counts if count is not None]
    if batch > ORDER_ROWS and len(known) == len(counts):  # the same calls at two rows
        example = example[:ORDER_ROWS]
        calls = [replace(c, batch=count * ORDER_ROWS) for c, count in zip(calls, known)]
    order = _batch_major(_subject(model), example, named, calls, folded) if folded else {}
    return tuple(
        Fold(count, True if count == 1 else order.get(layer)) for layer, count in enumerate(counts)
    )


def _batch_major(
    model: nn.Module,
    example: torch.Tensor,
    named: dict[str, nn.Module] | None,
    calls: Sequence[Call],
    layers: dict[int, int],
) -> dict[int, bool]:
    """``{layer: batch-major}`` for ``layers`` (``{layer: count}``, see `find_folds`); empty
    where it cannot be told: a forward that failed or made other calls."""
    gen = torch.Generator().manual_seed(1)
    other = torch.randn(example.shape, generator=gen).to(example)
    try:
        with eval_mode(model):
            base = _scores(model, example, named, calls, layers)
            if base is None:
                return {}
            verdict = dict.fromkeys(layers, True)
            for row in range(example.shape[0]):
                x = example.clone()
                x[row] = other[row]
                seen = _scores(model, x, named, calls, layers)
                if seen is None:
                    return {}
                for layer, count in layers.items():
                    own = list(range(row * count, (row + 1) * count))
                    verdict[layer] &= _changed_rows(base[layer], seen[layer]) == own
            return verdict
    except Exception:  # a forward that fails on another input or mode: the order is not known
        return {}


def _scores(
    model: nn.Module,
    x: torch.Tensor,
    named: dict[str, nn.Module] | None,
    calls: Sequence[Call],
    layers: Collection[int],
) -> dict[int, torch.Tensor] | None:
    """The scores of the attention calls in ``layers`` on ``x``; None where the forward made
    other calls than ``calls``."""
    seen: dict[int, torch.Tensor] = {}

    def site(layer: int, call: Call) -> Site | None:
        if layer not in layers:
            return None

        def keep(scores: torch.Tensor) -> torch.Tensor:
            seen[layer] = scores
            return scores

        return Site(hooked=True, on_scores=keep)

    found = _probe(model, x, named, site)
    return seen if found.calls == tuple(calls) else None


def _changed_rows(a: torch.Tensor, b: torch.Tensor) -> list[int]:
    """The rows (first axis) where ``a`` and ``b`` differ (a NaN in both is no change)."""
    differ = (a != b) & ~(a.isnan() & b.isnan())
    return differ.flatten(1).any(1).nonzero().flatten().tolist()
