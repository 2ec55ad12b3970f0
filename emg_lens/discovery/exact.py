"""Exact effects: masked forward passes that check what screening estimated.

`ExactPasses` caches the clean residual stream entering every layer once; a cut whose first
masked layer is ``l`` then runs only blocks ``l..L-1`` (the layers below it are unchanged).
The greedy search keeps a second copy, the stream of the cut it has accepted so far, so each
trial costs the layers from its candidate's layer on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from emg_lens.discovery.family import base_layer_masks
from emg_lens.discovery.metrics import window_metric
from emg_lens.edges import EdgeSet
from emg_lens.errors import ArgumentError
from emg_lens.models.base import LAYERWISE, provides

__all__ = ["ExactPasses", "Score"]


@dataclass(frozen=True)
class Score:
    """The metric (mean over windows), the accuracy and the accuracy per class (of the
    classes among the windows) of one exact pass."""

    metric: float
    accuracy: float
    class_accuracy: dict[int, float] = field(default_factory=dict)


class ExactPasses:
    """Exact masked passes over fixed windows, starting at the first layer a cut changes;
    ``base`` (an edge set) is cut in every pass, the clean one included.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> from emg_lens.hooks import compile_edges
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = model.example_input(8); y = model(X).argmax(-1)
    >>> passes = ExactPasses(model, X, y, metric="margin", return_type="logits")
    >>> masks = compile_edges("cross_modal", model, [1])
    >>> logits = model(X, edge_masks=masks).detach()
    >>> got = passes.score(masks)
    >>> abs(got.metric - float(window_metric(logits, y, "margin").mean())) < 1e-5
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
        base: EdgeSet | None = None,
    ):
        self.model, self.metric, self.return_type = model, metric, return_type
        # cut in every pass, the clean one included: the model as it runs
        self.base = base_layer_masks(model, base, next(model.parameters()).device) or {}
        self.n_layers = model.cfg.n_layers
        device = next(model.parameters()).device
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

    def _merged(self, masks: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """``masks`` with the base cut of every layer added."""
        merged = dict(self.base)
        for layer, mask in masks.items():
            merged[layer] = mask | merged[layer] if layer in merged else mask
        return merged

    def _block(self, resid: torch.Tensor, layer: int, mask: torch.Tensor | None) -> torch.Tensor:
        cut = [m for m in (mask, self.base.get(layer)) if m is not None]
        masks = {layer: cut[0] | cut[-1]} if cut else None
        return self.model(resid, start_at_layer=layer, stop_at_layer=layer + 1, edge_masks=masks)

    @torch.inference_mode()
    def _run(
        self, streams: list[list[torch.Tensor]], masks: dict[int, torch.Tensor], start: int
    ) -> tuple[Score, list[list[torch.Tensor]]]:
        values, correct, new = [], [], []
        for i, (batch, y) in enumerate(zip(streams, self.y)):
            if self.layerwise:
                resid, out = batch[start], [batch[start]]
                for layer in range(start, self.n_layers):
                    resid = self._block(resid, layer, masks.get(layer))
                    out.append(resid)
                logits = self.model.readout(resid, self.return_type)
            else:
                out = batch
                logits = self.model(
                    self.windows[i], edge_masks=self._merged(masks), return_type=self.return_type
                )
            if not torch.isfinite(logits).all():
                raise ArgumentError(
                    "an exact masked pass gave non-finite logits: the model's weights or the "
                    "evaluation windows overflow"
                )
            values.append(window_metric(logits, y, self.metric).double().cpu())
            correct.append((logits.argmax(-1) == y).cpu())
            new.append(out)
        hit, y = torch.cat(correct).double(), torch.cat(self.y).cpu()
        per_class = {int(k): float(hit[y == k].mean()) for k in y.unique()}
        score = Score(float(torch.cat(values).mean()), float(hit.mean()), per_class)
        return score, new

    def score(self, masks: dict[int, torch.Tensor]) -> Score:
        """The metric and accuracy with ``masks`` (``{layer: mask}``) on the clean model."""
        start = min(masks, default=self.n_layers)
        return self._run(self.clean, masks, start)[0]

    def trial(
        self, masks: dict[int, torch.Tensor], start: int
    ) -> tuple[Score, list[list[torch.Tensor]]]:
        """Score ``masks`` (the accepted cut plus one candidate in layer ``start``) from the
        accepted cut's stream entering ``start``; `accept` with the returned streams."""
        return self._run(self.state, masks, start)

    def accept(self, start: int, streams: list[list[torch.Tensor]]) -> None:
        """Make the trial that returned ``streams`` the accepted cut."""
        for batch, new in zip(self.state, streams):
            batch[start:] = new
