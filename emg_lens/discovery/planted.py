"""Ground truth for screening and discovery: IsoNets whose cross-modal routing is planted.
`train_planted` trains an IsoNet on the planted synthetic data with every cross-modal edge cut
(`training_edges`) except ``emg->acc`` on the planted (layer, head) pairs, so what the
interaction gestures need passes there. As it runs after training the planted candidates are
the only cross-modal edges with attention; unmasked, the other heads' open too, and the screen
should still put a planted head first (`planted_rank`; `recovery` scores a `Discovery`).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence
from functools import reduce

from emg_lens._hints import checked
from emg_lens.config import config_for_data
from emg_lens.data.preprocess import SubjectData, prepare_subject
from emg_lens.data.synthetic.emg_acc import generate_recordings, planted_setup
from emg_lens.discovery.screen import Screen
from emg_lens.discovery.search import Discovery
from emg_lens.edges import EdgeSet, between, cross_modal, heads, layers
from emg_lens.hooks import compile_edges
from emg_lens.models import IsoNet
from emg_lens.train import TrainConfig, fit

ONE_HEAD = ((1, 2),)
"""(layer, head) pairs that carry cross-modal information: layer 1, head 2."""
TWO_HEADS = ((0, 1), (1, 2))
"""The two-head variant: head 1 of layer 0 and head 2 of layer 1."""
PLANTED_KIND = "emg->acc"
"""The planted edges: sEMG tokens reading ACC tokens (`between("emg", "acc")`)."""
CROSS_KINDS = ("emg->acc", "acc->emg")


@checked
def planted_data(step: int = 100, subject: int = 1) -> SubjectData:
    """One subject of the planted synthetic data, windows every ``step`` samples."""
    synthetic, preprocess = planted_setup(n_subjects=subject)
    preprocess = dataclasses.replace(preprocess, step=step)
    return prepare_subject(generate_recordings(synthetic, [subject])[0], preprocess)


@checked
def training_edges(
    model: IsoNet, planted: Sequence[tuple[int, int]], route: EdgeSet | None = None
) -> EdgeSet:
    """Every cross-modal edge in every layer, but ``route`` (default ``emg->acc``,
    `PLANTED_KIND`) on the planted (layer, head) pairs: what `train_planted` cuts, as one edge
    set naming its layers.

    >>> from emg_lens import EncoderConfig
    >>> str(training_edges(IsoNet(EncoderConfig.preset("tiny")), ONE_HEAD))
    'cross_modal & layers(0) | (cross_modal - between(emg,acc) & heads(2)) & layers(1)'
    """
    route = between("emg", "acc") if route is None else route
    parts = []
    for layer in range(model.cfg.n_layers):
        open_heads = [h for lay, h in planted if lay == layer]
        cut = cross_modal() - (route & heads(*open_heads)) if open_heads else cross_modal()
        parts.append(cut & layers(layer))
    return reduce(operator.or_, parts)


@checked
def train_planted(
    data: SubjectData,
    planted: Sequence[tuple[int, int]] | None = ONE_HEAD,
    *,
    seed: int = 0,
    epochs: int = 14,
    route: EdgeSet | None = None,
    reuse: bool = False,
    report: Callable[[str], None] | None = None,
    preset: str = "demo",
    device: str = "cpu",
    lr: float = 2e-3,
    batch_size: int = 64,
) -> IsoNet:
    """An IsoNet of ``preset``'s size (``demo``: 2 layers, the tests'; ``paper``: its own 5)
    trained with `training_edges` cut (``planted`` None: plain training; ``route``: the
    cross-modal edges left open on the planted heads, default ``emg->acc``) for ``epochs`` (14:
    enough for discovery to find the planted edges in each of 24 seeds and thread counts
    tried, tests/integration/test_discovery_planted.py; a route in both directions takes longer
    to be used, test_head_planted.py trains 25; ``lr``, ``batch_size``: `TrainConfig`'s);
    returned in eval mode, without the masks. ``reuse``: read the training where it was done
    before (`emg_lens.train.fit`'s ``reuse``), which ``report`` (``print``, say) is told of;
    ``device``: where it trains (and stays)."""
    settings = {"seed": seed, "device": device} | ({"n_layers": 2} if preset == "demo" else {})
    n_samples = data.X_train.shape[-1]
    cfg = config_for_data(IsoNet, preset, data.modalities, data.n_classes, n_samples, **settings)
    model = IsoNet(cfg)
    train = TrainConfig(epochs, batch_size, lr, anneal_fraction=1.0, seed=seed, progress=False)
    edges = None if planted is None else training_edges(model, planted, route)
    masks = None if edges is None else compile_edges(edges, model)
    fit(model, data.X_train, data.y_train, train, edge_masks=masks, reuse=reuse, report=report)
    return model.eval()


@checked
def recovery(found: Discovery, planted: Sequence[tuple[int, int]]) -> dict[str, float]:
    """Recall and precision of the circuit's cross-modal candidates against the planted
    ``emg->acc`` candidates of the planted (layer, head) pairs."""
    truth = {(lay, h, PLANTED_KIND) for lay, h in planted}
    kept = {(c.layer, c.head, c.kind) for c in found.kept if c.kind in CROSS_KINDS}
    hits = len(truth & kept)
    return {
        "recall": hits / len(truth),
        "precision": hits / len(kept) if kept else float("nan"),
        "kept_cross_modal": len(kept),
        "planted": len(truth),
    }


@checked
def planted_rank(screened: Screen, planted: Sequence[tuple[int, int]]) -> int:
    """The rank, among the screen's cross-modal candidates ordered by estimate (1 = the
    largest estimated drop), of the first planted one."""
    table = screened.table[screened.table["kind"].isin(CROSS_KINDS)].sort_values("estimate")
    truth = {(lay, h, PLANTED_KIND) for lay, h in planted}
    on_planted = [(int(r.layer), int(r.head), r.kind) in truth for r in table.itertuples()]
    return on_planted.index(True) + 1
