"""One checkpoint, inspected: the tables and figures ``emg-lens inspect`` writes.

`inspect_checkpoint` loads a checkpoint and the test windows of its subject (from the data
source its metadata records), takes ``n_windows`` of them evenly spaced over the test set (so
every gesture and repetition is represented), and computes attention flow, the weight-based
QK and OV circuits of every layer (where the model's tokens have a data-free identity), head
importance, direct attribution and the distribution shift of cutting the "across" edges
(cross-modal, or cross-channel on a single-modality model) in every layer."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from emg_lens._io import make_folder, write_if_changed
from emg_lens.checkpoints import load_checkpoint, load_checkpoint_data, read_checkpoint_info
from emg_lens.data.datasets import montages_of
from emg_lens.data.placement import has_placement
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import ArgumentError, UnsupportedFeatureError, checked
from emg_lens.inspect.attribution import attribution_hooks, direct_attribution, readout_map
from emg_lens.inspect.circuits import ov_circuit, qk_circuit
from emg_lens.inspect.flow import attention_flow
from emg_lens.inspect.importance import (
    as_subject_data,
    channel_importance,
    default_kinds,
    head_importance,
    mass_effect_correlation,
)
from emg_lens.inspect.plots import heads, layers, patterns
from emg_lens.inspect.shift import distribution_shift
from emg_lens.layout import CLS
from emg_lens.models.base import TL_WEIGHTS, require
from emg_lens.output import save_outputs
from emg_lens.report.view import VIEW_DATA
from emg_lens.stats.chance import TrialScore, chance_console, chance_markdown, chance_table
from emg_lens.train import predict
from emg_lens.train.baseline import below_baseline

MAX_FLOW_BINS = 8  # channel bins of a single-modality model's flow heatmaps
MAX_CIRCUIT_CHANNELS = 16  # more channels: the QK circuit by token group
PATTERN_WINDOWS = 64  # windows averaged in the pattern figure (patterns are n_tokens² each)


@dataclass
class InspectionReport:
    """The tables of one inspected model; `save` writes them (CSV) and their figures."""

    model: Any
    subject: int
    flow: pd.DataFrame
    importance: pd.DataFrame
    attribution: pd.DataFrame | None  # None: the readout is no linear map (attribution_skipped)
    shift: pd.DataFrame | None  # None: the model has no block outputs to compare (shift_skipped)
    shift_edges: str
    pattern_cache: Any  # an ActivationCache of the patterns of the top head's layer
    top_head: tuple[int, int]
    # The weight circuits of every layer; None where the model's tokens have no data-free
    # identity (see emg_lens.inspect.circuits).
    qk: pd.DataFrame | None = None
    ov: pd.DataFrame | None = None
    n_windows: int = 0
    attribution_skipped: str | None = None  # why there is no attribution table
    circuits_skipped: str | None = None  # why there are no weight circuits (no TL weights)
    shift_skipped: str | None = None  # why there is no distribution shift table
    source: dict | None = None  # the data source the windows come from (its placement)
    channels: pd.DataFrame | None = None  # channel_importance: each channel unread
    threads: int | None = None  # torch's CPU threads it was computed on (in the saved spec)
    chance: pd.DataFrame | None = None  # the unmasked accuracy beside chance (chance_table)
    circuits_left_out: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> why
    view_skipped: str | None = None  # why report.html shows no attention view

    @property
    def correlation(self) -> pd.DataFrame:
        return mass_effect_correlation(self.importance)

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {"attention_flow": self.flow, **self._circuits()}
        return tables | {
            "head_importance": self.importance,
            "mass_effect_correlation": self.correlation,
            **({} if self.attribution is None else {"attribution": self.attribution}),
            **({} if self.shift is None else {"distribution_shift": self.shift}),
            **({} if self.channels is None else {"channel_importance": self.channels}),
            **({} if self.chance is None else {"chance": self.chance}),
        }

    def _circuits(self) -> dict[str, pd.DataFrame]:
        pairs = (("qk_circuit", self.qk), ("ov_circuit", self.ov))
        return {name: table for name, table in pairs if table is not None}

    def figures(self) -> dict[str, Any]:
        layer, head = self.top_head
        draw = {"qk_circuit": heads.plot_qk_circuit, "ov_circuit": heads.plot_ov_circuit}
        figs = {
            "attention_flow": heads.plot_attention_flow(self.flow),
            **{name: draw[name](table) for name, table in self._circuits().items()},
            "head_importance": heads.plot_head_importance(self.importance),
            "mass_vs_effect": heads.plot_mass_vs_effect(self.importance),
        }
        if self.attribution is not None:
            figs["attribution"] = heads.plot_attribution(self.attribution)
        if self.shift is not None:
            figs["distribution_shift"] = layers.plot_distribution_shift(self.shift)
        figs["pattern"] = patterns.plot_pattern(self.model, self.pattern_cache, layer, head)
        return figs

    def geometry_figures(self) -> dict[str, Any]:
        """The top head's attention and QK scores per channel drawn on the data's electrode
        placement (`emg_lens.data.datasets.montages_of`), its channel x channel QK matrix, and
        the attention between token groups as a circle plot."""
        from emg_lens.geometry.draw import plot_channel_matrix, plot_channel_values, plot_circle

        layer, head = self.top_head
        layout = self.model.layout
        where = f"L{layer}H{head} (the top {self.shift_edges} head)"
        figs: dict[str, Any] = {"group_flow": _group_circle(self.flow, plot_circle)}
        montages = montages_of(self.source, layout)
        if self.channels is not None:
            effect = {
                g: 100 * rows.sort_values("channel")["delta_accuracy"].to_numpy()
                for g, rows in self.channels.groupby("group", sort=False)
                if g in montages
            }
            if effect:
                figs["channel_effect"] = plot_channel_values(
                    effect,
                    montages,
                    title=f"Subject {self.subject}: accuracy when no token reads the channel "
                    "(every edge into it cut, every layer)",
                    units="Δ accuracy (points)",
                    symmetric=True,
                )
        pattern = self.pattern_cache["pattern", layer][:, head].float()  # [batch, query, key]
        received = pattern.mean(dim=(0, 1)).cpu().numpy()  # per key token
        values = _per_channel(layout, received, total=True)
        placed = {m: v for m, v in values.items() if m in montages}
        if placed:
            figs["attention_received"] = plot_channel_values(
                placed,
                montages,
                title=f"Subject {self.subject}: attention each channel receives, {where}",
                units="share of a query's attention (mean over queries, windows)",
            )
        top, _ = self._top_qk()
        if top is not None:
            square = top.pivot(index="query", columns="key", values="score")
            order = [q for q in dict.fromkeys(top["query"]) if q in square.columns]
            square = square.reindex(index=order, columns=order)
            groups = dict(zip(top["query"], top["query_group"]))
            figs["qk_matrix"] = plot_channel_matrix(
                square.to_numpy(),
                order,
                [groups[q] for q in order],
                title=f"Subject {self.subject}: QK circuit of {where}, by channel",
                units="attention score before the softmax (data-free tokens)",
                symmetric=True,
            )
            if CLS in square.index:
                scores = _channel_scores(layout, square.loc[CLS])
                chosen = {m: v for m, v in scores.items() if m in montages}
                if chosen:
                    figs["qk_cls_query"] = plot_channel_values(
                        chosen,
                        montages,
                        title=f"Subject {self.subject}: which channel the CLS query of {where} "
                        "wants to read",
                        units="QK score before the softmax (data-free tokens)",
                        symmetric=True,
                    )
        return figs

    def _top_qk(self) -> tuple[pd.DataFrame | None, str | None]:
        """The top head's QK circuit by channel (whatever the channel count; the all-heads
        table may be by group), or None and why the model's tokens cannot have one."""
        layer, head = self.top_head
        try:
            return qk_circuit(self.model, layer, head=head, level="channel"), None
        except UnsupportedFeatureError as exc:
            return None, str(exc)

    def left_out(self) -> list[str]:
        """Every table and figure this report leaves out, each with why: the "Left out" lines
        of summary.md (and of ``report.html``)."""
        lines = []
        if self.attribution is None:
            lines.append(f"attribution (table and figure): {self.attribution_skipped}")
        lines += [
            f"{name} (table and figure): {why}" for name, why in self.circuits_left_out.items()
        ]
        layout = self.model.layout
        montages = montages_of(self.source, layout)
        unplaced = [m for m in layout.modalities if m not in montages]
        if unplaced:
            where = (
                "no data source came with the windows"
                if self.source is None
                else f"the data source (dataset {self.source.get('dataset')!r}) places none"
            )
            names = (
                "the layout names no channels"
                if layout.channel_names is None
                else "its channel names are not all 10-20 / 10-10 names"
            )
            every = len(unplaced) == len(layout.modalities)
            what = (
                "channel_effect, attention_received, qk_cls_query (figures)"
                if every
                else ("their channels in channel_effect, attention_received, qk_cls_query")
            )
            lines.append(f"{what}: no electrode placement of {', '.join(unplaced)}: {where}, "
                         f"and {names}")  # fmt: skip
        top, why = self._top_qk()
        if top is None:
            lines.append(f"qk_matrix, qk_cls_query (figures): {why}")
        elif CLS not in layout.group:
            lines.append("qk_cls_query (figure): the layout has no CLS token to query from")
        if self.view_skipped is not None:
            lines.append(f"the attention view of report.html: {self.view_skipped}")
        return lines

    def to_markdown(self) -> str:
        """summary.md: what was inspected and the summary's lines."""
        lines = self.summary().splitlines()
        head = f"# Inspection: {lines[0]}\n\n"
        if self.chance is not None:
            head += chance_markdown(self.chance) + "\n"
        left = "".join(f"- Left out: {line}\n" for line in self.left_out())
        return (
            head
            + "\n".join(f"- {line.strip()}" for line in lines[1:])
            + "\n"
            + (f"\n## Left out\n\n{left}" if left else "")
        )

    def console(self) -> str:
        """What ``emg-lens inspect`` prints: the summary, the accuracy beside chance and a
        warning when the model is not clearly above it."""
        if self.chance is None:
            return self.summary()
        return f"{self.summary()}\n{chance_console(self.chance, below_baseline=below_baseline)}"

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write every table as CSV, summary.md, every figure as PNG and SVG, and report.html
        into ``out_dir`` (`emg_lens.output.save_outputs`), with an interactive CircuitsVis view
        of the top head's layer when circuitsvis is installed."""
        _write_view(self, Path(out_dir))
        layer, head = self.top_head
        return save_outputs(
            out_dir,
            {f"{name}.csv": table for name, table in self.tables().items()},
            self.to_markdown(),
            lambda: {**self.figures(), **self.geometry_figures()},
            kind="inspection",
            title=f"{type(self.model).__name__}, subject {self.subject}",
            spec={"model": type(self.model).__name__, "subject": self.subject,
                  "windows": self.n_windows, "top_head": f"L{layer}H{head}",
                  **({} if self.threads is None else {"threads": self.threads}),
                  **({} if self.source is None else {"data_source": self.source})},
        )  # fmt: skip

    def summary(self) -> str:
        """A few lines: baseline, the most important heads, mass-effect correlation,
        attribution and shift at the last layer."""
        imp = self.importance
        lines = [
            f"{type(self.model).__name__}, subject {self.subject}: {imp['metric'].iloc[0]} "
            f"{imp['baseline'].iloc[0]:.3f} on {self.n_windows} windows"
        ]
        for kind, rows in imp.groupby("kind", sort=False):
            top = rows.nsmallest(3, "delta")
            heads = ", ".join(f"L{r.layer}H{r.head} {r.delta:+.3f}" for r in top.itertuples())
            rho = self.correlation.set_index("kind").loc[kind, "spearman_rho"]
            lines.append(f"  mask {kind}: top heads {heads}; Spearman(mass, drop) = {rho:.2f}")
        if self.circuits_skipped is not None:
            lines.append(f"  weight circuits (QK, OV): skipped ({self.circuits_skipped})")
        if self.attribution is None:
            lines.append(f"  attribution: skipped ({self.attribution_skipped})")
        else:
            per = self.attribution.groupby("component", sort=False)["value"].mean()
            top = per.reindex(per.abs().sort_values(ascending=False).index[:3])
            parts = ", ".join(f"{k} {v:+.2f}" for k, v in top.items())
            lines.append(f"  attribution (mean): {parts}")
        if self.shift is None:
            lines.append(f"  distribution shift: skipped ({self.shift_skipped})")
            return "\n".join(lines)
        last = self.shift[(self.shift["group"] == "all")].iloc[-1]
        lines.append(
            f"  shift after the last layer ({self.shift_edges} masked everywhere): cosine "
            f"{last.cosine_distance:.3f}, MMD² {last.mmd2:.4f} (no shift: {last.mmd2_null:.4f})"
        )
        return "\n".join(lines)


def _modality_channels(layout: Any) -> dict[str, list[int]]:
    """Each modality's channel ids, in order (channel k of the modality is the k-th)."""
    return {
        m: sorted({c for g, c in zip(layout.group, layout.channel) if g == m})
        for m in layout.modalities
    }


def _per_channel(layout: Any, token_values: np.ndarray, total: bool) -> dict[str, np.ndarray]:
    """Token values summed (``total``) or averaged over each channel's tokens (its patches),
    per modality, channel k of the modality at index k."""
    out = {}
    for modality, channels in _modality_channels(layout).items():
        values = []
        for channel in channels:
            tokens = [i for i, c in enumerate(layout.channel) if c == channel]
            picked = np.asarray(token_values)[tokens]
            values.append(picked.sum() if total else picked.mean())
        out[modality] = np.asarray(values, dtype=float)
    return out


def _channel_scores(layout: Any, row: pd.Series) -> dict[str, np.ndarray]:
    """A QK row by key label (``ch<id>``) as a value per channel of each modality."""
    return {
        modality: np.asarray([row.get(f"ch{c}", np.nan) for c in channels], dtype=float)
        for modality, channels in _modality_channels(layout).items()
    }


def _group_circle(flow: pd.DataFrame, plot_circle: Callable[..., Any]) -> Any:
    """The attention between token groups, over every layer and head, as a circle plot:
    log2 of the attention mass a query group puts on a key group over the mass a uniform
    pattern would (0: as much as uniform)."""
    ratio = flow.groupby(["query_group", "key_group"], sort=False)["ratio"].mean()
    groups = list(dict.fromkeys(flow["query_group"]))
    weights = np.array(
        [[np.log2(ratio.get((q, k), np.nan)) for k in groups] for q in groups], dtype=float
    )
    return plot_circle(
        weights,
        groups,
        title="Attention between token groups (mean over layers and heads)",
        units="log2(mass / uniform)",
        symmetric=True,
    )


def _write_view(report: InspectionReport, out: Path) -> None:
    """``attention_view.json``: every head's pattern of the top head's layer for one window,
    tokens named by their channels, from which ``report.html`` builds the CircuitsVis view
    (`emg_lens.report.view`: never a folder's HTML)."""
    record = patterns.attention_view_record(report.pattern_cache, report.top_head[0])
    make_folder(out)
    write_if_changed(out / VIEW_DATA, json.dumps(record) + "\n")


@checked
def inspect_model(
    model: Any,
    data: SubjectData | tuple[Any, Any],
    *,
    batch_size: int = 256,
    progress: Callable[[str], None] | None = None,
    source: dict | None = None,
    train_accuracy: float | None = None,
) -> InspectionReport:
    """Inspect ``model`` on the test windows of ``data`` (a `SubjectData` or ``(X, y)``; select
    the windows first: `SubjectData.select_windows`). ``progress`` is called with a line before
    each step. ``source`` (a checkpoint's ``data_source``) places the figures on the body;
    ``train_accuracy`` names the fault of a model that is not above chance."""
    step = progress or (lambda message: None)
    skipped = _why_no_attribution(model)  # refuses models without class logits before any work
    data = as_subject_data(model, data)
    layout = model.layout
    X = torch.as_tensor(data.X_test, dtype=model.cfg.dtype, device=model.cfg.device)
    y = torch.as_tensor(data.y_test)
    step(f"[2/5] attention flow over {len(X)} windows, and the weight circuits")
    if len(layout.groups) > 1:
        flow = attention_flow(model, X, batch_size=batch_size)
    else:
        bins = None if model.cfg.n_channels <= MAX_FLOW_BINS else MAX_FLOW_BINS
        flow = attention_flow(model, X, by="channel", bins=bins, batch_size=batch_size)
    qk, ov, circuits_left_out = _weight_circuits(model)
    step(
        f"[3/5] head importance ({model.cfg.n_layers} layers x {model.cfg.n_heads} heads) and "
        f"channel importance ({model.cfg.n_channels} channels)"
    )
    importance = head_importance(model, data, batch_size=batch_size)  # metric: accuracy
    pred = predict(model, data.X_test, batch_size=batch_size)  # the head importance's output
    placement = has_placement(source, data)
    score = TrialScore.from_predictions(
        pred, data.y_test, data.test_trials, model.cfg.n_classes,
        train_accuracy=train_accuracy, placement=placement, unit=data.meta.get("trial_unit"),
    )  # fmt: skip
    chance = chance_table({f"subject {data.subject}": score})
    channels = channel_importance(model, data, batch_size=batch_size)
    if skipped is None:
        step("[4/5] direct attribution to the class logits")
        attribution = _batched_attribution(model, X, y, batch_size)
    else:
        step(f"[4/5] direct attribution: skipped ({skipped})")
        attribution = None
    across = default_kinds(layout)[1]
    step(f"[5/5] distribution shift when {across} edges are cut")
    shift_skipped = None
    try:
        shift = distribution_shift(
            model, X, across, range(model.cfg.n_layers), batch_size=batch_size
        )
    except UnsupportedFeatureError as exc:  # no block outputs (an attached model's)
        shift, shift_skipped = None, str(exc)
    top = importance[importance["kind"] == across].nsmallest(1, "delta").iloc[0]
    layer, head = int(top["layer"]), int(top["head"])
    with torch.inference_mode():
        _, pattern_cache = model.run_with_cache(
            X[:PATTERN_WINDOWS], names_filter=f"blocks.{layer}.attn.hook_pattern", return_type=None
        )
    return InspectionReport(
        model=model,
        subject=data.subject,
        flow=flow,
        importance=importance,
        attribution=attribution,
        shift=shift,
        shift_edges=across,
        pattern_cache=pattern_cache,
        top_head=(layer, head),
        qk=qk,
        ov=ov,
        n_windows=len(X),
        attribution_skipped=skipped,
        circuits_skipped=_why_no_weights(model),
        shift_skipped=shift_skipped,
        channels=channels,
        threads=torch.get_num_threads(),
        chance=chance,
        circuits_left_out=circuits_left_out,
        source=source,
        view_skipped=(
            "circuitsvis is not installed (pip install circuitsvis)"
            if importlib.util.find_spec("circuitsvis") is None
            else None
        ),
    )


def _why_no_weights(model: Any) -> str | None:
    """Why the weight-based tables (QK and OV circuits, attribution) cannot be made: a model
    without TransformerLens weights (an attached model) says which converter gives them."""
    try:
        require(model, TL_WEIGHTS, "the weight tables (QK, OV circuits, direct attribution)")
    except UnsupportedFeatureError as exc:
        return str(exc)
    return None


def _why_no_attribution(model: Any) -> str | None:
    """Why `direct_attribution` cannot read ``model`` (its readout is no linear map of the
    final stream: a user's readout module, a flattening head, post-LN blocks; no weights in
    TransformerLens shapes), or None; a model with no class logits at all (a TinyMyo
    pretrained for reconstruction) is refused."""
    if (why := _why_no_weights(model)) is not None:
        return why
    if getattr(model, "task", "classification") != "classification":
        readout_map(model)  # raises, naming the task
    try:
        readout_map(model)
    except ArgumentError as exc:
        return str(exc)
    return None


def _weight_circuits(model: Any) -> tuple[pd.DataFrame | None, pd.DataFrame | None, dict]:
    """The QK (by channel, or by group past `MAX_CIRCUIT_CHANNELS`) and OV circuits of every
    layer; None for a circuit the model's tokens cannot have (a constant table), and why, by
    table name."""
    level = "channel" if model.cfg.n_channels <= MAX_CIRCUIT_CHANNELS else "group"
    layers = range(model.cfg.n_layers)
    tables: list[pd.DataFrame | None] = []
    skipped = {}
    for name, circuit in (
        ("qk_circuit", partial(qk_circuit, level=level)),
        ("ov_circuit", ov_circuit),
    ):
        try:
            parts = [circuit(model, layer) for layer in layers]
            tables.append(pd.concat(parts, ignore_index=True))
        except UnsupportedFeatureError as exc:
            tables.append(None)
            skipped[name] = str(exc)
    return tables[0], tables[1], skipped


def _batched_attribution(model: Any, X: torch.Tensor, y: torch.Tensor, batch_size: int):
    """`direct_attribution` batch by batch (a cache of every window at once can be large)."""
    tables = []
    for start in range(0, len(X), batch_size):
        with torch.inference_mode():
            _, cache = model.run_with_cache(
                X[start : start + batch_size], names_filter=attribution_hooks(model)
            )
        table = direct_attribution(model, cache, y[start : start + batch_size])
        tables.append(table.assign(sample=table["sample"] + start))
    return pd.concat(tables, ignore_index=True)


def inspect_checkpoint(
    checkpoint: str | Path,
    *,
    n_windows: int = 256,
    batch_size: int = 256,
    progress: Callable[[str], None] | None = None,
    device: str | None = None,
) -> InspectionReport:
    """Load a checkpoint (onto ``device``, default the CPU) and its subject's test windows
    (from the data source recorded in its metadata) and inspect it on ``n_windows`` of them;
    ``progress`` as in `inspect_model`."""
    meta = read_checkpoint_info(checkpoint)["metadata"]
    if progress is not None:
        progress(f"[1/5] loading {checkpoint} and its subject's test windows")
    model = load_checkpoint(checkpoint, device=device)  # refuses a bad config before any data
    data = load_checkpoint_data(checkpoint).select_windows(n_windows)
    return inspect_model(
        model,
        data,
        batch_size=batch_size,
        progress=progress,
        source=meta["data_source"],
        train_accuracy=(meta.get("metrics") or {}).get("train_accuracy"),
    )
