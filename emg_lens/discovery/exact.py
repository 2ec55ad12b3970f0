"""Exact effects: masked forward passes that check what screening estimated.

`ExactPasses` caches the clean residual stream entering every layer once, so a cut whose first
masked layer is ``l`` runs only blocks ``l..L-1``; for the greedy search it keeps the cut
accepted so far, so each trial costs the layers from its candidate's on
(`ExactPasses.cut_greedily`). `ExactPasses.score` computes a block only at the query rows the
cut touches (`TransformerBlock.rows_forward`) and the last block only where the readout reads
(its cost: docs/ARCHITECTURE.md, "Discovery: what to trust")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool
from tqdm.auto import tqdm

from emg_lens.components.block import TransformerBlock
from emg_lens.discovery.metrics import Scorer
from emg_lens.edges import EdgeSet
from emg_lens.errors import ArgumentError, checked
from emg_lens.hooks import compile_edges
from emg_lens.models.base import LAYERWISE, provides


def base_layer_masks(
    model: Any, base: EdgeSet | None, device: torch.device | str | None = None
) -> dict[int, torch.Tensor] | None:
    """``{layer: mask}`` of an edge set cut in every pass (the model as it runs), leaving out
    layers where it cuts nothing; None for no base.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.edges import cross_modal, layers
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> {k: tuple(m.shape) for k, m in base_layer_masks(model, cross_modal() & layers(1)).items()}
    {1: (4, 7, 7)}
    """
    if base is None:
        return None
    cut = compile_edges(base, model)  # the one compiled cut
    return {layer: m.to(device) for layer, m in cut.items() if m.any()}


@checked
@dataclass(frozen=True)
class Score:
    """The metric (mean over windows), the accuracy and the accuracy per class (of the
    classes among the windows) of one exact pass; beside the passes with nothing cut
    (``full``) and every candidate cut (``empty``), how much of them a cut keeps.

    >>> full, empty = Score(1.0, 0.9, {0: 1.0, 1: 0.8}), Score(0.0, 0.5, {0: 0.0, 1: 0.8})
    >>> cut = Score(0.96, 0.85, {0: 0.97, 1: 0.79})
    >>> cut.faithfulness(full, empty), cut.classes_lost(full, empty, 0.05)
    (0.96, [1])
    >>> cut.keeps(full, empty, 0.05), cut.keeps(full, empty, 0.05, keep_accuracy=False)
    (False, True)
    """

    metric: float
    accuracy: float
    class_accuracy: dict[int, float] = field(default_factory=dict)

    def faithfulness(self, full: Score, empty: Score) -> float:
        """``(m - m(empty)) / (m(full) - m(empty))``: 1 keeps all of the metric."""
        return (self.metric - empty.metric) / (full.metric - empty.metric)

    def classes_lost(self, full: Score, empty: Score, tau: float) -> list[int]:
        """The classes whose accuracy falls by more than ``tau`` of its full-to-empty range (by
        anything, where cutting every candidate does not lower it): their accuracy
        faithfulness is below ``1 - tau``."""
        lost = []
        for k, value in self.class_accuracy.items():
            allowed = tau * max(full.class_accuracy[k] - empty.class_accuracy[k], 0.0)
            if full.class_accuracy[k] - value > allowed + 1e-12:
                lost.append(k)
        return lost

    def keeps(self, full: Score, empty: Score, tau: float, keep_accuracy: bool = True) -> bool:
        """Whether this cut stays within ``tau`` of the metric's full-to-empty range (and, with
        ``keep_accuracy``, loses no class): the search's rule for cutting a candidate."""
        kept = full.metric - self.metric < tau * (full.metric - empty.metric)
        return kept and not (keep_accuracy and self.classes_lost(full, empty, tau))


@checked
class ExactPasses:
    """Exact masked passes over fixed windows, starting at the first layer a cut changes;
    ``base`` (an edge set, or its ``{layer: mask}`` as a `CompiledFamily` holds it) is cut in
    every pass, the clean one included.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> from emg_lens.hooks import compile_edges
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = model.example_input(8); y = model(X).argmax(-1)
    >>> passes = ExactPasses(model, X, y, metric="margin", return_type="logits")
    >>> masks = compile_edges("cross_modal", model, [1])
    >>> logits = model(X, edge_masks=masks).detach()
    >>> got = passes.score(masks)
    >>> abs(got.metric - float(passes.scorer(logits, y)["margin"].mean())) < 1e-5
    True
    """

    def __init__(
        self,
        model: Any,
        X: torch.Tensor,
        y: torch.Tensor,
        *,
        metric: str,
        return_type: str,
        batch_size: int = 256,
        base: EdgeSet | Mapping[int, torch.Tensor] | None = None,
    ):
        self.model, self.metric, self.return_type = model, metric, return_type
        self.scorer = Scorer((metric,))  # checked here, once
        device = next(model.parameters()).device
        # cut in every pass, the clean one included: the model as it runs
        self.base = (
            dict(base) if isinstance(base, Mapping) else base_layer_masks(model, base, device) or {}
        )
        self.n_layers = model.cfg.n_layers
        X = torch.as_tensor(X, dtype=model.cfg.dtype)
        self.y = [
            torch.as_tensor(y[i : i + batch_size], dtype=torch.long, device=device)
            for i in range(0, len(X), batch_size)
        ]
        self.clean: list[list[torch.Tensor]] = []  # per batch: the stream entering 0..L
        # A model that runs only whole (an attached model) is scored by whole masked forwards.
        self.layerwise = provides(model, LAYERWISE)
        self.windows = (
            []
            if self.layerwise
            else [X[i : i + batch_size].to(device) for i in range(0, len(X), batch_size)]
        )
        with torch.inference_mode():
            for i in range(0, len(X) if self.layerwise else 0, batch_size):
                resid = model(X[i : i + batch_size].to(device), stop_at_layer=0)
                streams = [resid]
                for layer in range(self.n_layers):
                    resid = self._block(resid, layer, None)
                    streams.append(resid)
                self.clean.append(streams)
        if not self.layerwise:
            self.clean = [[] for _ in self.windows]
        self.state = [list(streams) for streams in self.clean]  # the accepted cut's streams
        self.cut: dict[int, torch.Tensor] = {}  # the accepted cut's masks
        blocks = getattr(model, "blocks", ())
        # `score` computes a cut's first block at the rows it touches, and the last block at
        # the positions the readout reads when they are few (see the module docstring)
        self.by_rows = self.layerwise and all(isinstance(b, TransformerBlock) for b in blocks)
        read = model.read_positions(return_type) if self.by_rows else None
        self.read = (
            list(read) if read is not None and 4 * len(read) <= model.layout.n_tokens else None
        )

    def _block(self, resid: torch.Tensor, layer: int, mask: torch.Tensor | None) -> torch.Tensor:
        base = {layer: self.base[layer]} if layer in self.base else {}
        masks = _union({} if mask is None else {layer: mask}, base)
        return self.model(
            resid, start_at_layer=layer, stop_at_layer=layer + 1, edge_masks=masks or None
        )

    @torch.inference_mode()
    def _run(
        self, streams: list[list[torch.Tensor]], masks: dict[int, torch.Tensor], start: int
    ) -> tuple[Score, list[list[torch.Tensor]]]:
        logits_of, new = [], []
        for i, batch in enumerate(streams):
            if self.layerwise:
                resid, out = batch[start], [batch[start]]
                for layer in range(start, self.n_layers):
                    resid = self._block(resid, layer, masks.get(layer))
                    out.append(resid)
                logits = self.model.readout(resid, self.return_type)
            else:
                out = batch
                logits = self.model(
                    self.windows[i],
                    edge_masks=_union(masks, self.base),
                    return_type=self.return_type,
                )
            new.append(out)
            logits_of.append(logits)
        return self._score(logits_of), new

    def _score(self, logits_of: list[torch.Tensor]) -> Score:
        """The `Score` of each batch's logits, refusing non-finite ones."""
        values, correct = [], []
        for logits, y in zip(logits_of, self.y):
            if not torch.isfinite(logits).all():
                why = "the model's weights or the evaluation windows overflow"
                raise ArgumentError(f"an exact masked pass gave non-finite logits: {why}")
            values.append(self.scorer(logits, y)[self.metric].double().cpu())
            correct.append((logits.argmax(-1) == y).cpu())
        hit, y = torch.cat(correct).double(), torch.cat(self.y).cpu()
        per_class = {int(k): float(hit[y == k].mean()) for k in y.unique()}
        return Score(float(torch.cat(values).mean()), float(hit.mean()), per_class)

    def score(self, masks: dict[int, torch.Tensor]) -> Score:
        """The metric and accuracy with ``masks`` (``{layer: mask}``) on the clean model."""
        start = min(masks, default=self.n_layers)
        if self.by_rows and start < self.n_layers:
            return self._score(self._rows_run(masks, start))
        return self._run(self.clean, masks, start)[0]

    @torch.inference_mode()
    def _rows_run(self, masks: dict[int, torch.Tensor], start: int) -> list[torch.Tensor]:
        """Each batch's logits with ``masks`` (first layer ``start``) on the clean model, block
        ``start`` computed at the query positions the cut changes and the last block at
        ``read`` (see the module docstring)."""
        blocks, last, n = self.model.blocks, self.n_layers - 1, self.model.layout.n_tokens
        # checked (and moved to the device) as a forward pass checks them
        masks = self.model._check_edge_masks(masks, batch=len(self.y[0]))
        full = _union(masks, self.base)
        first = masks[start] & ~self.base[start] if start in self.base else masks[start]
        first = first.broadcast_to((*first.shape[:-2], n, n)).reshape(-1, n, n)
        rows = first.any(-1).any(0).nonzero()[:, 0].tolist()  # the query positions it changes
        logits_of = []
        for streams in self.clean:
            resid = streams[start + 1]
            if rows:
                resid = resid.clone()
                resid[:, rows] = blocks[start].rows_forward(streams[start], rows, full[start])
            for layer in range(start + 1, self.n_layers):
                if layer < last or self.read is None:
                    resid = blocks[layer](resid, full.get(layer))
                else:  # the readout reads `read` alone: the clean stream fills the rest
                    rows_out = blocks[layer].rows_forward(resid, self.read, full.get(layer))
                    resid = streams[-1].clone()
                    resid[:, self.read] = rows_out
            logits_of.append(self.model.readout(resid, self.return_type))
        return logits_of

    def trial(self, mask: torch.Tensor, layer: int) -> tuple[Score, Trial]:
        """Score the accepted cut with ``mask`` (one candidate's ``[head, query, key]`` mask)
        added in ``layer``, from the accepted cut's stream entering ``layer``; `accept` the
        returned `Trial` to make it the accepted cut."""
        masks = _union(self.cut, {layer: mask})
        score, streams = self._run(self.state, masks, layer)
        return score, Trial(layer, masks, streams)

    def accept(self, trial: Trial) -> None:
        """Make ``trial`` (of the cut accepted so far) the accepted cut."""
        self.cut = trial.masks
        for batch, new in zip(self.state, trial.streams):
            batch[trial.layer :] = new

    def cut_greedily(
        self,
        candidates: Sequence[tuple[int, Bool[torch.Tensor, "head query key"]]],
        full: Score,
        empty: Score,
        tau: float,
        keep_accuracy: bool = True,
        progress: bool = False,
    ) -> tuple[list[tuple[Score, bool]], Score]:
        """The search's cuts: each candidate, in order, tried with the cut accepted so far
        (`trial`) and cut when `Score.keeps` the metric (`accept`). Returns each trial's score
        and decision, and the circuit scored again from the clean model, which must give the
        incremental passes' metric, else `ArgumentError`.

        >>> from emg_lens import EncoderConfig
        >>> from emg_lens.models import IsoNet
        >>> from emg_lens.discovery import compile_family
        >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
        >>> X = model.example_input(16); y = model(X).argmax(-1)
        >>> family = compile_family(model)
        >>> passes = ExactPasses(model, X, y, metric="margin", return_type="logits")
        >>> full, empty = passes.score({}), passes.score(family.everything)
        >>> trials, circuit = passes.cut_greedily(
        ...     [(c.layer, mask) for c, mask in zip(family, family.masks)], full, empty, 0.1
        ... )
        >>> len(trials), circuit.keeps(full, empty, 0.1)
        (72, True)
        """
        trials, current = [], full
        for layer, mask in tqdm(candidates, desc="discover", disable=not progress, leave=False):
            score, trial = self.trial(mask, layer)
            keep_cut = score.keeps(full, empty, tau, keep_accuracy)
            if keep_cut:
                self.accept(trial)
                current = score
            trials.append((score, keep_cut))
        again = self.score(self.cut)
        if abs(again.metric - current.metric) > 1e-4 * max(1.0, abs(full.metric - empty.metric)):
            raise ArgumentError(
                f"the circuit's metric differs between the incremental passes "
                f"({current.metric:.6g}) and a pass from the clean model ({again.metric:.6g}): "
                "the model is not deterministic (dropout in training mode?) or its blocks "
                "depend on more than the stream they are given"
            )
        return trials, again


@dataclass(frozen=True)
class Trial:
    """What `ExactPasses.trial` measured: the cut's masks and, per batch of windows, its
    stream entering each layer from ``layer`` on."""

    layer: int
    masks: dict[int, torch.Tensor]
    streams: list[list[torch.Tensor]]


def _union(*parts: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """``{layer: mask}`` cutting what any of ``parts`` cuts."""
    out: dict[int, torch.Tensor] = {}
    for part in parts:
        for layer, mask in part.items():
            out[layer] = out[layer] | mask if layer in out else mask
    return out
