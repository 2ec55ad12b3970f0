"""Head importance: the causal effect of cutting one head's edges in one layer, next to the
attention mass those edges carry.

The "token-group contribution" the IsoNet paper proposes for specialising heads, run as a study
grid (``heads = [[0], [1], ...]``, layer mode ``individual``) by `run_study`, so it shares the
runner's batching and its check that every mask took effect. The mass sits beside the effect
because a head may attend a lot over edges it does not need, or little over edges it does."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps

from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import parse
from emg_lens.errors import ArgumentError, checked
from emg_lens.inputs import as_subject_data, check_deterministic, check_model
from emg_lens.inspect.flow import masked_mass, mean_patterns
from emg_lens.layout import TokenLayout
from emg_lens.stats.metrics import score_logits
from emg_lens.studies import run_study


@checked
def default_kinds(layout: TokenLayout) -> tuple[str, str]:
    """The edge kinds to rank heads by: ``("unimodal", "cross_modal")`` when the layout has
    several modalities, else ``("same_channel", "cross_channel")`` (e.g. TinyMyo's sEMG only).

    >>> default_kinds(TokenLayout.channel_tokens({"emg": 4}, cls_token=False))
    ('same_channel', 'cross_channel')
    """
    if len(layout.modalities) > 1:
        return ("unimodal", "cross_modal")
    return ("same_channel", "cross_channel")


def _check_kinds(model: Any, kinds: Any) -> list[str]:
    layout = model.layout
    if isinstance(kinds, str) or not kinds:
        raise ArgumentError(
            f"kinds must be a non-empty list of edge expressions, e.g. {default_kinds(layout)}, "
            f"got {kinds!r}"
        )
    canonical = []
    for kind in kinds:
        edges = parse(kind)
        if not edges.compile(layout, model.cfg.n_heads).any():
            raise ArgumentError(
                f"edge kind {str(edges)!r} selects no edge; e.g. {default_kinds(layout)} do"
            )
        canonical.append(str(edges))
    if len(set(canonical)) != len(canonical):
        raise ArgumentError(f"kinds repeats an edge set: {canonical}")
    return canonical


@checked
def head_importance(
    model: Any,
    data: SubjectData | tuple[Any, Any],
    *,
    metric: str = "accuracy",
    kinds: list[str] | tuple[str, ...] | None = None,
    return_type: str = "logits",
    batch_size: int = 256,
) -> pd.DataFrame:
    """Per kind, layer and head: the metric with that head's edges of that kind masked in that
    layer alone, on the test windows of ``data`` (a `SubjectData`, or ``(X, y)``). Columns:
    ``kind, layer, head, metric, baseline, value, delta`` (``value - baseline``), ``rank`` (1
    = the largest drop, per kind), ``mass`` (the head's attention on those edges) and
    ``spearman_rho`` (per kind, of mass and drop: `mass_effect_correlation`). ``kinds`` are
    edge expressions (default `default_kinds`); ``return_type`` is the output scored.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
    >>> X = model.example_input(16)
    >>> table = head_importance(model, (X, model(X).argmax(-1)))
    >>> len(table), float(table["baseline"].iloc[0])  # 2 kinds x 2 layers x 4 heads
    (16, 1.0)
    """
    check_model(model)
    check_deterministic(model)
    subject = as_subject_data(model, data)
    kinds = _check_kinds(model, default_kinds(model.layout) if kinds is None else kinds)
    names = {kind: kind if kind.isidentifier() else f"kind_{i}" for i, kind in enumerate(kinds)}
    spec = {
        "name": "head_importance",
        "models": "in-memory",
        "metric": metric,
        "return_type": return_type,
        "interventions": [{"name": names[kind], "edges": kind} for kind in kinds],
        "layers": {"modes": ["individual"]},
        "heads": [[head] for head in range(model.cfg.n_heads)],
    }
    result = run_study(
        spec, models={subject.subject: (model, subject)}, batch_size=batch_size, progress=False
    )
    assert result is not None  # no out_dir: run_study refuses torchrun ranks, so it returns
    per = result.per_subject
    baseline = float(per.loc[per["intervention"] == "baseline", "value"].iloc[0])
    pattern = mean_patterns(model, subject.X_test, batch_size=batch_size)
    tables = []
    for kind in kinds:
        rows = per[per["intervention"] == names[kind]]
        mass = masked_mass(pattern, parse(kind).compile(model.layout, model.cfg.n_heads))
        layers = rows["layer"].astype(int).to_numpy()
        heads = rows["heads"].astype(int).to_numpy()
        table = pd.DataFrame(
            {
                "kind": kind,
                "layer": layers,
                "head": heads,
                "metric": metric,
                "baseline": baseline,
                "value": rows["value"].to_numpy(dtype=float),
                "mass": mass.numpy()[layers, heads],
            }
        )
        table["delta"] = table["value"] - baseline
        table["rank"] = table["delta"].rank(method="min").astype(int)
        tables.append(table)
    columns = ["kind", "layer", "head", "metric", "baseline", "value", "delta", "rank", "mass"]
    out = pd.concat(tables, ignore_index=True)[columns]
    rho = mass_effect_correlation(out).set_index("kind")["spearman_rho"]
    return out.assign(spearman_rho=out["kind"].map(rho))


@checked
def mass_effect_correlation(table: pd.DataFrame) -> pd.DataFrame:
    """Per kind, the Spearman correlation over (layer, head) between the attention ``mass`` of
    the edges and the drop in the metric when they are cut (``-delta``): positive when heads
    that attend more over those edges also need them more. NaN when either is constant.

    >>> table = pd.DataFrame({"kind": "cross_modal", "mass": [0.1, 0.5, 0.3],
    ...                       "delta": [0.0, -0.2, -0.1]})
    >>> mass_effect_correlation(table)[["kind", "spearman_rho", "n"]].to_dict("records")
    [{'kind': 'cross_modal', 'spearman_rho': 1.0, 'n': 3}]
    """
    rows = []
    for kind, group in table.groupby("kind", sort=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN
            rho, p = sps.spearmanr(group["mass"], -group["delta"])
        rows.append({"kind": kind, "spearman_rho": float(rho), "p": float(p), "n": len(group)})
    return pd.DataFrame(rows, columns=["kind", "spearman_rho", "p", "n"])


@torch.inference_mode()
@checked
def channel_importance(
    model: Any,
    data: SubjectData | tuple[Any, Any],
    *,
    return_type: str = "logits",
    batch_size: int = 256,
) -> pd.DataFrame:
    """Per input channel: every attention edge into its tokens cut in every layer (its own
    tokens still carry it on), and the change of accuracy and mean margin on the test windows
    of ``data`` (a `SubjectData`, or ``(X, y)``): what each channel is worth to the other
    tokens. Columns: ``group, channel`` (within its group), ``channel_id``, ``accuracy,
    delta_accuracy, margin, delta_margin, baseline_accuracy, baseline_margin``.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
    >>> X = model.example_input(16)
    >>> table = channel_importance(model, (X, model(X).argmax(-1)))
    >>> len(table), table["group"].tolist()[:3], float(table["baseline_accuracy"].iloc[0])
    (6, ['emg', 'emg', 'acc'], 1.0)
    """
    check_model(model)
    check_deterministic(model)
    subject = as_subject_data(model, data)
    layout = model.layout
    X = torch.as_tensor(subject.X_test, dtype=model.cfg.dtype, device=model.cfg.device)

    def logits(masks: dict | None) -> torch.Tensor:
        parts = [
            model(X[i : i + batch_size], return_type=return_type, edge_masks=masks)
            for i in range(0, len(X), batch_size)
        ]
        return torch.cat(parts).float().cpu()

    reference = logits(None)
    y, n = np.asarray(subject.y_test), subject.n_classes
    base = score_logits(reference, reference, y, n)["values"]
    channel_ids = torch.as_tensor(layout.channel, device=model.cfg.device)
    first = {g: min(c for gg, c in zip(layout.group, layout.channel) if gg == g) for g in
             layout.modalities}  # fmt: skip
    rows = []
    for channel in sorted(set(layout.channel) - {-1}):
        cut = (channel_ids == channel)[None, :].expand(layout.n_tokens, -1)  # [query, key]
        masked = logits(dict.fromkeys(range(model.cfg.n_layers), cut))
        values = score_logits(masked, reference, y, n)["values"]
        group = layout.group[layout.channel.index(channel)]
        rows.append(
            {
                "group": group,
                "channel": channel - first[group],
                "channel_id": channel,
                "accuracy": values["accuracy"],
                "delta_accuracy": values["accuracy"] - base["accuracy"],
                "margin": values["margin"],
                "delta_margin": values["margin"] - base["margin"],
                "baseline_accuracy": base["accuracy"],
                "baseline_margin": base["margin"],
            }
        )
    return pd.DataFrame(rows)
