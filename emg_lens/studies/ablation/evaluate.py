"""Evaluating one subject's conditions: build each condition's per-layer masks, run them all
as a prefix tree, verify that every mask took effect, refuse non-finite outputs, and score
(`emg_lens.stats.metrics.score_stacked`). How and why: docs/DESIGN.md §5 ("Evaluation",
"Verification"); `tree_plan` says what is left to run.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from jaxtyping import Float

from emg_lens.components import TransformerBlock
from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import (
    ArgumentError,
    LayoutError,
    SpecError,
    StudyError,
    check_choice,
    describe,
)
from emg_lens.hooks import attn_scores_filter, compile_edges, mask_edges, zero_modality
from emg_lens.models.base import LAYERWISE, provides
from emg_lens.stats.metrics import score_logits, score_stacked
from emg_lens.studies.ablation.erasure import ErasureFits
from emg_lens.studies.ablation.grid import BASELINE, Condition
from emg_lens.studies.ablation.spec import StudySpec
from emg_lens.studies.ablation.stacking import ConditionForm, run_children, windows_per_call
from emg_lens.studies.subjects import Subject
from emg_lens.user_code import (
    StudyCode,
    hooks_from_factory,
    running_code,
)

VERIFY_WINDOWS = 4
PROBE_ROWS = 64  # positions probed per readout call (see _readout_rows)


@dataclass(frozen=True)
class _ModelReads:
    """What the evaluation reads of a model, asked once per evaluation: whether it runs layer
    by layer (`LAYERWISE`: a prefix tree of blocks, else one whole forward per sequence) and
    the device and dtype of its parameters (where `_readout_rows` builds its probe)."""

    layerwise: bool
    device: torch.device
    dtype: torch.dtype


def _model_reads(model) -> _ModelReads:
    """`_ModelReads` of ``model``."""
    layerwise = provides(model, LAYERWISE)
    device, dtype = model.param_device_dtype()
    return _ModelReads(layerwise, device, dtype)


class _MaskTable:
    """Distinct compiled masks, by content, so equal masks share one id."""

    def __init__(self) -> None:
        self.masks: list[torch.Tensor] = []
        self._ids: dict[bytes, int] = {}
        # the id of a mask tensor already seen (a compiled layer's, asked for by every
        # condition acting there), by object, with the tensor kept so its id() stays its own
        self._seen: dict[int, tuple[torch.Tensor, int | None]] = {}
        self.compiled: dict[EdgeSet, list[torch.Tensor]] = {}  # per-layer masks, by edge set
        self.parsed: dict[str, EdgeSet] = {}  # edge expressions, parsed once
        self.read: dict[str, torch.Tensor | None] = {}  # `_readout_rows`, by return type
        self._on: dict[torch.device, list[torch.Tensor]] = {}  # `on`'s copies, by device

    def id(self, mask: torch.Tensor) -> int | None:
        seen = self._seen.get(id(mask))
        if seen is not None and seen[0] is mask:
            return seen[1]
        self._seen[id(mask)] = (mask, self._content_id(mask))
        return self._seen[id(mask)][1]

    def on(self, device: torch.device) -> list[torch.Tensor]:
        """The masks on ``device``, each copied there once (a copy from the host's pageable
        memory to a GPU waits for all the work queued before it: the tree and verification
        take them from here)."""
        if device.type == "cpu":
            return self.masks
        copies = self._on.setdefault(device, [])
        copies += [m.to(device) for m in self.masks[len(copies) :]]
        return copies

    def _content_id(self, mask: torch.Tensor) -> int | None:
        if not mask.any():
            return None  # an empty mask is no mask at all
        # The shape as text: bytes(shape) fails on a dimension of 256 or more (TinyMyo: 800)
        key = mask.numpy().tobytes() + repr(tuple(mask.shape)).encode()
        if key not in self._ids:
            self._ids[key] = len(self.masks)
            self.masks.append(mask)
        return self._ids[key]


def _mask_sequence(model, edges: EdgeSet, condition: Condition, table: _MaskTable):
    """The mask id of each layer (None: unmasked); an edge set naming `layers` is compiled
    for each layer it acts on."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    masks = table.compiled.get(edges)
    if masks is None:  # compiled once per edge set, not once per condition
        try:  # the one compiled cut: a layer the model lacks, or no edge selected, refused
            masks = list(compile_edges(edges, model).values())
        except LayoutError as exc:
            raise SpecError(f"intervention {condition.name!r}: {exc}") from exc
        table.compiled[edges] = masks  # one tensor per layer, kept: ids by object
    if condition.heads is not None:
        keep = torch.zeros(n_heads, dtype=torch.bool)
        keep[list(condition.heads)] = True
        masks = [mask & keep[: len(mask), None, None] for mask in masks]
    return tuple(
        table.id(masks[layer]) if layer in condition.layers else None for layer in range(n_layers)
    )


def _edge_sequences(
    model, todo: list[Condition], code: StudyCode, table: _MaskTable
) -> tuple[dict[str, tuple], list[Condition]]:
    """Mask sequences by condition key (edge conditions and the baseline), and the conditions
    that run as plain hooked passes instead (input ablations, hook factories, erasures)."""
    sequences: dict[str, tuple] = {}
    other: list[Condition] = []
    for c in todo:
        i = c.intervention
        if i is None:
            sequences[c.key] = (None,) * model.cfg.n_layers
        elif i.edges is not None:
            if i.edges not in table.parsed:  # parsed once per expression
                table.parsed[i.edges] = parse(i.edges)
            sequences[c.key] = _mask_sequence(model, table.parsed[i.edges], c, table)
        elif i.hook is not None and isinstance(code.targets[i.hook], EdgeSet):
            sequences[c.key] = _mask_sequence(model, code.targets[i.hook], c, table)
        else:  # a hook file's factory, an input ablation or an erasure
            other.append(c)
    return sequences, other


@torch.inference_mode()
def _readout_rows(model, return_type: str, reads: _ModelReads) -> torch.Tensor | None:
    """Bool ``[n_tokens]``: the final positions the readout reads, or None for "assume all".

    Probed with NaN: row ``p`` of a batch of zero residual streams holds NaN at position ``p``
    only, and the readout reads ``p`` iff NaN reaches its output row ``p`` (a CLS head reads
    position 0 alone; an average head every channel token).
    """
    if not isinstance(model.blocks[-1], TransformerBlock):
        return None  # a block we do not know may mix positions outside attention
    n = model.layout.n_tokens
    device, dtype = reads.device, reads.dtype
    read = []
    for start in range(0, n, PROBE_ROWS):  # [rows, n, d_model]: bounded for long layouts
        rows = min(PROBE_ROWS, n - start)
        probe = torch.zeros(rows, n, model.cfg.d_model, device=device, dtype=dtype)
        # row i's position start + i, the diagonal: no index copied to the device
        probe[:, start : start + rows].diagonal(dim1=0, dim2=1).fill_(float("nan"))
        try:
            out = model.readout(probe, return_type)
        except Exception:  # a readout that refuses the probe is assumed to read every position
            return None
        if not isinstance(out, torch.Tensor) or out.shape[0] != rows:
            return None
        read.append((~torch.isfinite(out.reshape(rows, -1))).any(-1))
    return torch.cat(read).cpu()  # one copy back (on a GPU, one synchronisation)


def _read_rows(table: _MaskTable, return_type: str) -> list[int] | None:
    """The positions the readout reads (probed by `_canonical_sequences`) where it reads
    some and not all: the last layer is computed at those query rows alone."""
    read = table.read.get(return_type)
    if read is None or bool(read.all()):
        return None
    return read.nonzero()[:, 0].tolist()


def _canonical_sequences(
    model, sequences: list[tuple], table: _MaskTable, return_type: str, reads: _ModelReads
) -> dict[tuple, tuple]:
    """Each sequence -> the one the tree computes: a last-layer mask that cuts no query row
    the readout reads changes no output (a block's output at position ``p`` depends on row
    ``p`` of its mask alone), so the sequence shares the unmasked last layer instead."""
    if return_type not in table.read:  # probed once per evaluation, not once per use
        table.read[return_type] = _readout_rows(model, return_type, reads)
    rows = table.read[return_type]
    if rows is None:
        return {seq: seq for seq in sequences}
    idle = {i for i, m in enumerate(table.masks) if not (m & rows[:, None]).any()}
    return {seq: (*seq[:-1], None) if seq[-1] in idle else seq for seq in sequences}


@dataclass(frozen=True)
class TreePlan:
    """The work of the prefix tree per window batch: block evaluations per layer (one per
    distinct non-empty prefix ending at that layer, `children`, each a prefix of mask ids into
    `masks`, ``[head, q, k]``), each sharing its parent's projections (one per distinct prefix
    ending at the layer before: `projections_per_layer`), the last layer at the query ``rows``
    the readout reads (None: every row), and readouts (one per distinct effect)."""

    blocks_per_layer: tuple[int, ...]
    effects: int
    rows: tuple[int, ...] | None = None
    children: tuple[tuple[tuple, ...], ...] = field(default=(), repr=False, compare=False)
    masks: tuple[torch.Tensor, ...] = field(default=(), repr=False, compare=False)

    @property
    def blocks(self) -> int:
        """Block evaluations per window batch, all layers."""
        return sum(self.blocks_per_layer)

    @property
    def projections_per_layer(self) -> tuple[int, ...]:
        """Per layer, the projections its blocks share (`TransformerBlock.project`): one per
        parent, each prefix of the layer before having children."""
        return (1, *self.blocks_per_layer[:-1])

    @classmethod
    def of(
        cls,
        sequences: Iterable[tuple],
        rows: Iterable[int] | None = None,
        masks: Sequence = (),
    ) -> TreePlan:
        """The plan for (canonical) mask sequences (their ids into ``masks``).

        >>> TreePlan.of([(None, None), (None, 0), (0, 0), (0, None)])
        TreePlan(blocks_per_layer=(2, 4), effects=4, rows=None)
        """
        wanted = set(sequences)
        n_layers = len(next(iter(wanted)))
        children = tuple(
            tuple(sorted({s[: layer + 1] for s in wanted}, key=str)) for layer in range(n_layers)
        )
        per_layer = tuple(len(c) for c in children)
        rows = None if rows is None else tuple(rows)
        return cls(per_layer, len(wanted), rows, children, tuple(masks))


def tree_plan(
    spec: StudySpec, model, conditions: list[Condition], code: StudyCode | None = None
) -> TreePlan:
    """What `evaluate_subject` computes for ``conditions`` on ``model``, per window batch: the
    block evaluations that its sharing cannot avoid, for a benchmark's lower bound (without
    verification's hooked passes).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> from emg_lens.studies import expand_grid
    >>> spec = StudySpec.from_dict({"name": "t", "models": "demo",
    ...     "interventions": [{"name": "cross", "edges": "cross_modal"}],
    ...     "layers": {"modes": ["individual", "from_first", "from_last"]}})
    >>> model = IsoNet(EncoderConfig.preset("tiny", n_layers=3))
    >>> tree_plan(spec, model, [BASELINE, *expand_grid(spec, 3, model.cfg.n_heads)])
    TreePlan(blocks_per_layer=(2, 4, 4), effects=4, rows=(0,))

    Seven sequences (six effects and the baseline), but the CLS head reads position 0 alone
    and ``cross_modal`` leaves CLS's row unmasked, so a last-layer mask changes nothing: NNC
    is NNN, CCC is CCN and NCC is NCN, leaving 4; and the last layer computes CLS's row alone.
    """
    code = code if code is not None else StudyCode.load(spec.code_files(), allow_code=False)
    table = _MaskTable()
    sequences, _ = _edge_sequences(model, conditions, code, table)
    distinct = sorted(set(sequences.values()), key=str)
    canonical = _canonical_sequences(model, distinct, table, spec.return_type, _model_reads(model))
    return TreePlan.of(canonical.values(), _read_rows(table, spec.return_type), table.masks)


def structural_zeros(spec: StudySpec, model, conditions: list[Condition]) -> list[str]:
    """The keys of the edge conditions that cannot change ``model``'s scored output: their
    masks cut no edge, or only last-layer rows the readout does not read. A study reports them
    as structural zeros, out of the correction family; hook and input conditions never are.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> from emg_lens.studies import expand_grid
    >>> spec = StudySpec.from_dict({"name": "t", "models": "demo",
    ...     "interventions": [{"name": "cross", "edges": "cross_modal"}],
    ...     "layers": {"modes": ["individual"]}})
    >>> model = IsoNet(EncoderConfig.preset("tiny"))  # 2 layers, the CLS head
    >>> [c.layer for c in expand_grid(spec, 2, 4) if c.key in structural_zeros(spec, model,
    ...     expand_grid(spec, 2, 4))]  # the CLS row is not cross-modal
    [1]
    """
    edge_conditions = [
        c for c in conditions if c.intervention is not None and c.intervention.edges is not None
    ]
    table = _MaskTable()
    sequences, _ = _edge_sequences(model, edge_conditions, StudyCode({}, {}, None), table)
    return _structural_keys(model, sequences, table, spec.return_type, _model_reads(model))


def _structural_keys(
    model, sequences: dict[str, tuple], table: _MaskTable, return_type: str, reads: _ModelReads
) -> list[str]:
    """The keys whose mask sequence computes the unmasked output (`_canonical_sequences`)."""
    distinct = list(set(sequences.values()))
    canonical = _canonical_sequences(model, distinct, table, return_type, reads)
    unmasked = (None,) * model.cfg.n_layers
    return [key for key, seq in sequences.items() if canonical[seq] == unmasked]


@torch.inference_mode()
def _run_prefix_tree(
    model,
    X: torch.Tensor,
    sequences: list[tuple],
    table: _MaskTable,
    batch_size: int,
    return_type: str,
    form: ConditionForm | None,
    reads: _ModelReads,
) -> dict[tuple, torch.Tensor]:
    """Outputs for every mask sequence, sharing all common prefixes (docs/DESIGN.md §5);
    each layer's masked children run in ``form``'s form (`emg_lens.studies.ablation.stacking`;
    None: the device's rule), which it records. Sequences computed as one (a dropped
    last-layer mask) share one output tensor, which `evaluate_subject` scores once."""
    form = (form or ConditionForm()).resolve(X.device, layerwise=reads.layerwise)
    canonical = _canonical_sequences(model, sequences, table, return_type, reads)
    wanted = sorted(set(canonical.values()), key=str)
    # [1, head, q, k]: broadcast over the batch, never copied per window (4-D for SDPA).
    masks = [m[None] for m in table.on(X.device)]
    out: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    if not reads.layerwise:  # an attached model: one whole forward per sequence
        for start in range(0, len(X), batch_size):
            for seq in wanted:
                cut = {layer: masks[i] for layer, i in enumerate(seq) if i is not None}
                xb = X[start : start + batch_size]
                call = partial(model, xb, edge_masks=cut, return_type=return_type)
                out[seq].append(_scored_output(call, model, return_type, len(xb)))
    else:
        rows, last = _read_rows(table, return_type), len(model.blocks) - 1
        per_call = windows_per_call(model, X.device, batch_size)
        for start in range(0, len(X), per_call):
            states = {(): model(X[start : start + per_call], stop_at_layer=0)}
            for layer, block in enumerate(model.blocks):
                children = sorted({seq[: layer + 1] for seq in wanted}, key=str)
                at = rows if layer == last else None
                states = run_children(block, states, children, masks, form, rows=at)
            for seq in wanted:
                read = partial(model.readout, states[seq], return_type)
                out[seq].append(_scored_output(read, model, return_type, len(states[seq])))
        form.settle()
    joined = {seq: torch.cat(parts) for seq, parts in out.items()}
    return {seq: joined[canonical[seq]] for seq in sequences}


@torch.inference_mode()
def _verify(model, X: torch.Tensor, checks: list, table: _MaskTable, return_type: str) -> None:
    """Re-run a few windows of each condition (``checks``: its name, mask sequence and logits)
    through the hooked path; demand equal logits and zero patterns. Compared on the device and
    read back in one copy (on a GPU each read is a synchronisation)."""
    masks, found = table.on(X.device), []
    layout_of = getattr(model, "layout_of", lambda layer: model.layout)
    for _, seq, logits in checks:
        layers = {layer: masks[i] for layer, i in enumerate(seq) if i is not None}
        hooks = [(attn_scores_filter([i]), mask_edges(m, layout_of(i))) for i, m in layers.items()]
        names = [f"blocks.{layer}.attn.hook_pattern" for layer in layers]
        with model.hooks(fwd_hooks=hooks), warnings.catch_warnings():
            # a structural zero is verified too; the summary names it (the hooks' warning)
            warnings.filterwarnings("ignore", message=".*cuts edges only in the last layer")
            hooked, cache = model.run_with_cache(X, names_filter=names, return_type=return_type)
        leaked = [torch.where(m, cache[n].abs(), 0).amax() for n, m in zip(names, layers.values())]
        close = torch.isclose(hooked, logits, atol=1e-4, rtol=1e-4).all()
        found += [*leaked, ~close, (hooked - logits).abs().amax()]
    values = iter(torch.stack([v.float() for v in found]).tolist() if found else [])
    for name, seq, _ in checks:
        for layer in (layer for layer, i in enumerate(seq) if i is not None):
            if (leak := next(values)) != 0:  # NaN too
                at = f"masked attention at layer {layer} is not zero (max {leak:.3g})"
                raise StudyError(f"condition {name!r}: {at}; the mask did not take effect")
        not_close, diff = next(values), next(values)
        if not_close:
            raise StudyError(
                f"condition {name!r}: the hooked and batched paths disagree (by {diff:.3g})"
            )


def _scored_output(
    call: Callable[[], Any], model, return_type: str, n: int
) -> Float[torch.Tensor, "n n_classes"]:
    """``call()``, the scored output of ``n`` windows, checked: ``[n, n_classes]`` logits of
    the return type the spec names (the tree's readouts, or a whole model's forwards)."""
    try:
        out = call()
    except ArgumentError as exc:
        raise SpecError(f"return_type = {return_type!r}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, model.cfg.n_classes):
        logits = f"[batch, n_classes={model.cfg.n_classes}] logits for {type(model).__name__}"
        raise SpecError(f"return_type = {return_type!r} does not give {logits}; use 'logits'")
    return out


def evaluate_subject(
    spec: StudySpec,
    subject: Subject,
    todo: list[Condition],
    *,
    batch_size: int,
    verify: bool,
    subject_id: int,
    code: StudyCode,
    form: ConditionForm | None = None,
) -> dict[str, dict]:
    """Cells (by condition key) for the conditions in ``todo`` on subject ``subject_id``.
    An output that is not finite is a `StudyError`, never a score. ``form`` says how the
    tree runs the conditions of a layer (`ConditionForm`; None: the device's rule) and
    records what it chose."""
    model, data = subject.model, subject.data
    reads = _model_reads(model)
    X = torch.as_tensor(data.X_test, dtype=model.cfg.dtype, device=model.cfg.device)
    y, trials = np.asarray(data.y_test), data.test_trials  # trials: the chance check's unit
    if not bool(torch.isfinite(X).all()):
        fix = "a study needs finite evaluation data: regenerate or clean it"
        windows = f"its test windows (X_test, {describe(X)})"
        raise StudyError(f"subject {subject_id}: {windows} hold NaN or inf values; {fix}")
    table = _MaskTable()
    sequences, other = _edge_sequences(model, todo, code, table)
    unmasked = (None,) * model.cfg.n_layers  # the reference of kl and flip_rate
    run = sorted(set(sequences.values()) | {unmasked}, key=str)
    logits = _run_prefix_tree(model, X, run, table, batch_size, spec.return_type, form, reads)
    distinct = list(dict.fromkeys([unmasked, *sequences.values()]))
    # sequences the tree computed as one (`_canonical_sequences`) share one output tensor:
    # stacked, checked and scored once, the unmasked first
    shared = {id(logits[seq]): logits[seq] for seq in distinct}
    row = {seq: list(shared).index(id(logits[seq])) for seq in distinct}
    # One copy to the host for the tree's outputs (on a GPU each .cpu() is a synchronisation),
    # checked there, every distinct one scored in one vectorised pass; equal sequences share
    # a cell's values
    host = torch.stack(list(shared.values())).cpu()
    all_finite = torch.isfinite(host).flatten(1).all(1).numpy()
    finite = {seq: bool(all_finite[row[seq]]) for seq in distinct}
    if not finite[unmasked]:  # a broken model is named as such
        _refuse_non_finite(logits[unmasked], spec, subject_id, BASELINE)
    for c in todo:
        if c.key in sequences and not finite[sequences[c.key]]:
            _refuse_non_finite(logits[sequences[c.key]], spec, subject_id, c)
    # as `structural_zeros` decides them before the run: edge conditions named in the spec
    named = {c.key for c in todo if c.intervention is not None and c.intervention.edges}
    edge_sequences = {key: seq for key, seq in sequences.items() if key in named}
    zeros = set(_structural_keys(model, edge_sequences, table, spec.return_type, reads))
    hooked = {}
    if other:
        # the reference on the hooked path: a hook that changes nothing scores kl = 0 exactly
        erasures = ErasureFits(model, data, batch_size)  # fitted on the training windows
        reference = _run_hooked(spec, model, X, BASELINE, batch_size, code, erasures)
        for c in other:
            hooked[c.key] = _run_hooked(spec, model, X, c, batch_size, code, erasures)
        _refuse_non_finite(reference, spec, subject_id, BASELINE)  # a broken model first
        for c in other:
            _refuse_non_finite(hooked[c.key], spec, subject_id, c)
    if verify:  # every masked sequence once, named by its last condition
        names = {seq: c.name for c in todo if (seq := sequences.get(c.key)) is not None}
        n = VERIFY_WINDOWS
        checks = [(name, s, logits[s][:n]) for s, name in names.items() if s != unmasked]
        _verify(model, X[:n], checks, table, spec.return_type)
    scored = score_stacked(host, host[row[unmasked]], y, data.n_classes, trials)
    scored_hooked = {
        key: score_logits(out, reference, y, data.n_classes, trials) for key, out in hooked.items()
    }
    cells = {key: _copy(scored[row[seq]]) for key, seq in sequences.items()}
    cells.update(scored_hooked)
    for c in other:  # an erasure's cell records its erasers' rank and what they leave
        if c.intervention is not None and c.intervention.erase is not None:
            cells[c.key].update(erasures.fitted(c.intervention, c.layers))
    for key, cell in cells.items():
        cell["structural"] = key in zeros
    return cells


def _copy(cell: dict[str, Any]) -> dict[str, Any]:
    """A cell of its own (its dicts and lists copied) for each condition sharing an output."""
    return {k: v.copy() if isinstance(v, (dict, list)) else v for k, v in cell.items()}


def _refuse_non_finite(out: torch.Tensor, spec: StudySpec, subject_id: int, c: Condition) -> None:
    """A NaN output has an argmax (class 0), so it would be scored as a result: refuse it."""
    finite = torch.isfinite(out)
    if bool(finite.all()):
        return
    where = ""
    if c.intervention is not None:
        row = c.row()
        where = f" (mode {c.mode}, layers {row['layers'] or '-'}, heads {row['heads']})"
    bad = f"{int((~finite).sum())} of {out.numel()} values of the scored output"
    fix = "check the model's weights (and, for an intervention, what it writes)"
    what = f"({spec.return_type!r}) are NaN or inf, so there is no prediction to score; {fix}"
    raise StudyError(f"subject {subject_id}, condition {c.name!r}{where}: {bad} {what}")


@torch.inference_mode()
def _run_hooked(
    spec: StudySpec,
    model,
    X: torch.Tensor,
    c: Condition,
    batch_size: int,
    code: StudyCode,
    erasures: ErasureFits,
) -> torch.Tensor:
    """The scored output (on the CPU) of an input ablation, a hook factory or an erasure (fitted
    by ``erasures``) by full forward passes; the baseline: without a hook, their reference."""
    i, ref, hooks = c.intervention, None, []  # the hook file, and its (name, hook) pairs
    if i is None:  # the baseline: no hook
        pass
    elif i.erase is not None:
        hooks = erasures.hooks(i, c.layers)
    elif i.zero_modality is not None:
        modalities = list(model.cfg.modalities)
        check_choice(
            i.zero_modality, modalities, f"intervention {c.name!r}: zero_modality", SpecError
        )
        hooks = [("hook_input", zero_modality(i.zero_modality, model))]
    else:  # a hook factory (edges run in the prefix tree, `_edge_sequences`)
        ref = i.hook
        assert ref is not None  # an Intervention names one action: its door (`_parse`)
        if c.heads is not None:
            why = f"which acts on every head; head subsets ({list(c.heads)}) need an edge set"
            raise SpecError(f"intervention {c.name!r} is a hook factory, {why}")
        hooks = hooks_from_factory(ref, code.targets[ref], model, list(c.layers))
    outputs = []
    # The hooks of a factory are the study's code: a failure (or exit) in them names the file.
    with running_code(ref, "running its hooks") if ref else contextlib.nullcontext():
        for start in range(0, len(X), batch_size):
            outputs.append(
                model.run_with_hooks(
                    X[start : start + batch_size], fwd_hooks=hooks, return_type=spec.return_type
                )
            )
    return torch.cat(outputs).cpu()
