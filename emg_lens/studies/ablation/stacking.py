"""How one layer of the prefix tree runs its masked children: ``"broadcast"`` (one block call
per child, its mask broadcast over the window batch) or ``"stacked"`` (children on the batch
axis, one mask per row: fewer, larger calls, which a GPU rewards), and `ConditionForm`, the rule
that chooses and its record (docs/guide/scale-out.md, "Conditions on the batch axis"). A node's
unmasked child runs alone, and the last layer only at the query rows the readout reads
(`LayerStep`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from emg_lens.components.block import TransformerBlock
from emg_lens.components.fast_attention import row_span
from emg_lens.errors import ArgumentError

FORMS = ("broadcast", "stacked")
RULES = ("auto", "timed", *FORMS)
# The caps of a stacked call and of a CPU call, and the measurements that set them:
# docs/guide/scale-out.md, "Conditions on the batch axis".
STACK_ROWS = 1024  # rows per stacked call at most
STACK_MASK_ENTRIES = 2**26  # mask entries per stacked call: SDPA's float bias of 256 MiB
# Masked children a layer needs before it is timed: a broadcast call and a stacked call of two
# to warm up, then at least one timed broadcast and two timed stacked.
MIN_TIMED = 6
CPU_MEASURED = (
    "on a CPU one call per condition, sharing its parent's projections: stacking copies a mask "
    "per row and shares nothing (benchmarks/study_vs_naive.py --quick --batch-conditions, 2 "
    "idle cores: stacked / broadcast 1.16-1.20)"
)

CPU_CALL_BYTES = 16 * 2**20  # a CPU block call's widest activation at most

Block = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
Node = tuple  # a mask-sequence prefix: its last entry is the child's mask id (None: unmasked)


@dataclass
class ConditionForm:
    """The rule (``"auto"``, ``"timed"``, ``"broadcast"`` or ``"stacked"``) and, once decided,
    the form a subject's tree runs in, why, and the timing that chose it (seconds per child).

    >>> form = ConditionForm("auto")
    >>> form.resolve(torch.device("cpu"), layerwise=True).form
    'broadcast'
    >>> ConditionForm("both")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: condition_form='both': expected one of 'auto', 'timed', ...
    """

    rule: str = "auto"
    form: str | None = None
    reason: str = ""
    seconds_per_child: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.rule not in RULES:
            raise ArgumentError(
                f"condition_form={self.rule!r}: expected one of "
                + ", ".join(repr(r) for r in RULES)
            )

    def resolve(self, device: torch.device, *, layerwise: bool) -> ConditionForm:
        """Decide what needs no timing: a form asked for, a whole-forward model, a CPU."""
        if self.form is not None:
            return self
        if not layerwise:
            self.form, self.reason = "broadcast", "an attached model runs whole forwards"
        elif self.rule in FORMS:
            self.form, self.reason = self.rule, "asked for"
        elif self.rule == "auto" and device.type == "cpu":
            self.form, self.reason = "broadcast", CPU_MEASURED
        return self

    def settle(self) -> None:
        """A tree that never had a layer to time broadcasts."""
        if self.form is None:
            self.form = "broadcast"
            self.reason = f"no layer had {MIN_TIMED} masked conditions to time"

    def record(self) -> dict[str, Any]:
        """What a run keeps of the choice (`emg_lens.studies.ablation.result.StudyResult`)."""
        return {
            "rule": self.rule,
            "form": self.form,
            "reason": self.reason,
            **{f"s_per_condition_{k}": round(v, 6) for k, v in self.seconds_per_child.items()},
        }


class LayerStep:
    """One block of the prefix tree for one layer's ``children``: ``step(states, child,
    mask)`` is ``block(states[parent], mask)``, where the children of one parent share the
    block's mask-free work (`TransformerBlock.project`), kept until that parent's last child
    has run (`done`); with ``rows`` (the last layer, where the readout reads those positions
    alone) only those query rows are computed, and the parent's stream fills the others,
    which the readout never reads. A block other than a `TransformerBlock` (or one refusing
    to share: hooks, training) runs whole.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import TransformerBlock
    >>> block = TransformerBlock(EncoderConfig.preset("tiny"), 0).eval()
    >>> _ = torch.manual_seed(0), [torch.nn.init.normal_(p, std=0.3) for p in block.parameters()]
    >>> x, mask = torch.randn(2, 7, 16), torch.rand(1, 4, 7, 7) > 0.5
    >>> step = LayerStep(block, [(None,), (0,)])
    >>> torch.equal(step({(): x}, (0,), mask), block(x, mask))
    True
    """

    def __init__(self, block: Block, children: Sequence[Node], rows: list[int] | None = None):
        self.block, self.rows = block, rows
        self._index: torch.Tensor | None = None  # ``rows`` on the device, made once
        self.left = Counter(c[:-1] for c in children)
        self.shared: dict[Node, Any] = {}
        # the block whose work the children share and whose rows it computes alone
        self.native = block if isinstance(block, TransformerBlock) else None

    def __call__(self, states: dict[Node, torch.Tensor], child: Node, mask) -> torch.Tensor:
        parent = child[:-1]
        x = states[parent]
        native = self.native
        if native is not None and parent not in self.shared:
            self.shared[parent] = native.project(x, self.rows)
        projected = self.shared.get(parent)
        self.done(child)
        if native is not None and projected is not None:
            return self._fill(x, native.from_projected(x, projected, mask))
        return self.forward(x, mask)

    def forward(self, x: torch.Tensor, mask) -> torch.Tensor:
        """The block on ``x`` (children stacked on the batch axis, say), nothing shared."""
        if self.rows is None:
            return self.block(x, mask)
        assert self.native is not None, "rows= needs a TransformerBlock (`evaluate` checks)"
        return self._fill(x, self.native.rows_forward(x, self.rows, mask))

    def done(self, child: Node) -> None:
        """``child`` has run: its parent's shared work goes with the parent's last child."""
        parent = child[:-1]
        self.left[parent] -= 1
        if self.left[parent] <= 0:
            self.shared.pop(parent, None)

    def _fill(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``x`` with ``out`` at positions ``rows``: consecutive rows (a CLS readout's) are
        written as a slice, other rows by an index made on the device once (a Python list
        copied to a GPU waits for all the work queued before it)."""
        if self.rows is None:
            return out
        span = row_span(self.rows)
        if span is not None:
            filled = x.clone()
            filled[:, span] = out
            return filled
        if self._index is None or self._index.device != x.device:
            self._index = torch.tensor(self.rows, device=x.device)
        return x.index_copy(1, self._index, out)


def run_children(
    block: Block,
    states: dict[Node, torch.Tensor],
    children: Sequence[Node],
    masks: Sequence[torch.Tensor],
    form: ConditionForm,
    rows: list[int] | None = None,
) -> dict[Node, torch.Tensor]:
    """``{child: block(states[parent], mask)}`` for every child (a prefix whose last entry is
    a mask id into ``masks``, each ``[1, head, q, k]``, or None), in ``form``'s form; an
    undecided auto form is timed here once the layer has `MIN_TIMED` masked children. With
    ``rows``, only those query rows are computed (`LayerStep`: the last layer).

    >>> block = lambda x, mask: x if mask is None else x * mask.sum()
    >>> masks = [torch.ones(1, 1, 2, 2, dtype=torch.bool)]
    >>> x = torch.ones(3, 2, 4)
    >>> out = run_children(block, {(): x}, [(None,), (0,)], masks, ConditionForm("stacked"))
    >>> out[(0,)][0, 0].tolist()
    [4.0, 4.0, 4.0, 4.0]
    """
    step = LayerStep(block, children, rows)
    out = {c: step(states, c, None) for c in children if c[-1] is None}
    masked = [c for c in children if c[-1] is not None]
    if not masked:
        return out
    per_call = _per_call(states[masked[0][:-1]], masks[masked[0][-1]])
    if form.form is None and per_call < 2:
        form.form = "broadcast"
        form.reason = f"a window batch fills a call ({STACK_ROWS} rows at most)"
    if form.form is None and len(masked) >= MIN_TIMED:
        # Each form's first calls warm up (a kernel's first launch, the allocator's first
        # blocks of that size), then the rest is timed, half in each form: each child once.
        warm = {"broadcast": masked[:1], "stacked": masked[1:3]}
        rest = masked[3:]
        halves = {"broadcast": rest[: len(rest) // 2], "stacked": rest[len(rest) // 2 :]}
        for name, half in warm.items():
            out.update(_FORMS[name](step, states, half, masks, per_call))
        start = _clock(out[masked[2]])  # each half timed from the end of the one before
        for name, half in halves.items():
            out.update(_FORMS[name](step, states, half, masks, per_call))
            end = _clock(out[half[-1]])
            form.seconds_per_child[name], start = (end - start) / len(half), end
        times = form.seconds_per_child
        form.form = min(times, key=times.__getitem__)
        form.reason = f"timed at the first layer with {len(masked)} masked conditions"
        return out
    run = _FORMS[form.form or "broadcast"]
    out.update(run(step, states, masked, masks, per_call))
    return out


def _broadcast(step, states, children, masks, per_call):
    return {c: step(states, c, masks[c[-1]]) for c in children}


def _stacked(step, states, children, masks, per_call):
    if step.rows is not None:  # a few rows per child: nothing to fill a device with, and the
        return _broadcast(step, states, children, masks, per_call)  # forms stay bit-equal
    out = {}
    for i in range(0, len(children), per_call):
        chunk = children[i : i + per_call]
        if len(chunk) == 1:
            out.update(_broadcast(step, states, chunk, masks, per_call))
            continue
        rows = states[chunk[0][:-1]].shape[0]
        x = torch.cat([states[c[:-1]] for c in chunk])
        mask = torch.cat([masks[c[-1]].expand(rows, -1, -1, -1) for c in chunk])
        out.update(zip(chunk, step.forward(x, mask).split(rows)))
        for c in chunk:
            step.done(c)
    return out


_FORMS = {"broadcast": _broadcast, "stacked": _stacked}


def windows_per_call(model: Any, device: torch.device, batch_size: int) -> int:
    """Windows per block call of the prefix tree: ``batch_size``, or on a CPU as many as
    keep a call's widest activation (q/k/v, the MLP's hidden layer or the residual stream)
    under `CPU_CALL_BYTES`.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> paper = IsoNet(EncoderConfig.preset("paper"))  # 49 tokens, q/k/v 1,536 wide
    >>> windows_per_call(paper, torch.device("cpu"), 256)
    55
    >>> windows_per_call(IsoNet(EncoderConfig.preset("demo")), torch.device("cpu"), 256)
    256
    """
    if device.type != "cpu":
        return batch_size
    cfg = model.cfg
    widest = max(3 * cfg.n_heads * cfg.d_head, cfg.d_mlp or 0, cfg.d_model)
    itemsize = torch.empty(0, dtype=cfg.dtype).element_size()
    per_window = model.layout.n_tokens * widest * itemsize
    return max(1, min(batch_size, CPU_CALL_BYTES // per_window))


def _per_call(state: torch.Tensor, mask: torch.Tensor) -> int:
    """Children per stacked call: `STACK_ROWS` rows and `STACK_MASK_ENTRIES` entries."""
    rows = state.shape[0]
    entries = rows * mask[0].numel()
    return max(1, min(STACK_ROWS // rows, STACK_MASK_ENTRIES // max(entries, 1)))


def _clock(t: torch.Tensor) -> float:
    """The time once the work queued up to ``t`` is done (a GPU synchronised)."""
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)
    elif t.device.type != "cpu" and hasattr(torch, "accelerator"):
        torch.accelerator.synchronize(t.device)
    return time.perf_counter()
