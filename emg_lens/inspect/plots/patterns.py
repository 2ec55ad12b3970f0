"""One layer's attention pattern, token by token: the tokens' names (`token_labels`), a head's
pattern with the token groups drawn along both axes (`plot_pattern`), and the interactive
views of every head (the record ``report.html`` draws, `attention_view_record`, and a
CircuitsVis view, `to_circuitsvis`: ``pip install circuitsvis`` (the clone's ``.[viz]`` extra))."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from transformer_lens import ActivationCache

from emg_lens._hints import checked
from emg_lens.errors import (
    ArgumentError,
    UnsupportedFeatureError,
    check_int,
    check_type,
    warn_caller,
)
from emg_lens.inputs import check_model
from emg_lens.inspect.checks import check_cache, layout_at
from emg_lens.inspect.plots.style import CLS_COLOR
from emg_lens.layout import CLS, TokenLayout
from emg_lens.report.view import require_circuitsvis, view_record
from emg_lens.studies.plots import COLORS


@checked
def token_labels(layout: TokenLayout) -> list[str]:
    """A short name per token: ``cls``, or its channel's name where the layout names its
    channels (``C3``), else the group and the channel's index within it (``acc3``), with
    ``:t{patch}`` when channels have several patches.

    >>> token_labels(TokenLayout.channel_tokens({"emg": 1, "acc": 2}))
    ['cls', 'emg0', 'acc0', 'acc1']
    >>> token_labels(TokenLayout.channel_tokens({"eeg": 2}, channel_names=["C3", "C4"]))
    ['cls', 'C3', 'C4']
    >>> token_labels(TokenLayout(("query",) * 2, (-1, -1), (-1, -1)))  # learned queries
    ['query0', 'query1']
    """
    check_type(layout, TokenLayout, "token_labels(layout) (e.g. model.layout)")
    first = {
        g: min(c for gg, c in zip(layout.group, layout.channel) if gg == g)
        for g in layout.modalities
    }
    several = len(set(layout.time) - {-1}) > 1
    names: list[str] = []
    for group, channel, time in zip(layout.group, layout.channel, layout.time):
        if group == CLS:
            names.append(CLS)
        elif channel < 0:  # a token of no channel (a learned query): its index in its group
            names.append(f"{group}{sum(n.startswith(group) for n in names)}")
        else:
            suffix = f":t{time}" if several else ""
            name = layout.channel_names[channel] if layout.channel_names else None
            names.append(f"{name or f'{group}{channel - first[group]}'}{suffix}")
    return names


_NOT_GIVEN: Any = object()  # a deprecated argument's default: not given


def _window(window: Any, sample: Any, where: str, default: Any) -> Any:
    """``window``, or ``sample``, its name until 0.1.0 (a *sample* is one time sample in this
    field; one cached input is a *window*), with a `DeprecationWarning` that names the new
    name; both given is refused. Kept for one release."""
    if sample is _NOT_GIVEN:
        return default if window is _NOT_GIVEN else window
    if window is not _NOT_GIVEN:
        raise ArgumentError(
            f"{where} got both window={window!r} and sample={sample!r}: give window="
        )
    warn_caller(
        f"{where}(sample=...) is deprecated and will be removed in the next release: one "
        f"cached input is a window; write {where}(..., window={sample!r})",
        DeprecationWarning,
    )
    return sample


@checked
def plot_pattern(
    model: Any,
    cache: ActivationCache,
    layer: int,
    head: int,
    *,
    window: int | None = _NOT_GIVEN,
    sample: int | None = _NOT_GIVEN,
) -> plt.Figure:
    """One head's attention pattern (cached window ``window``, or the mean over the cached
    windows when None, the default) with a colour strip per token group along both axes.
    ``sample=`` is ``window``'s deprecated name.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> _, cache = model.run_with_cache(model.example_input(2))
    >>> plot_pattern(model, cache, layer=0, head=1, window=1).axes[2].get_title()
    'layer 0, head 1: window 1'
    """
    check_model(model)
    layer = check_int(layer, "layer", 0, model.cfg.n_layers - 1)
    cache = check_cache(cache, model, [f"blocks.{layer}.attn.hook_pattern"])
    head = check_int(head, "head", 0, model.cfg.n_heads - 1)
    pattern = cache["pattern", layer][:, head]
    window = _window(window, sample, "plot_pattern", None)
    if window is None:
        pattern, what = pattern.mean(0), f"mean of {len(pattern)} windows"
    else:
        window = check_int(window, "window (None: the mean)", 0, len(pattern) - 1)
        pattern, what = pattern[window], f"window {window}"
    layout = layout_at(model, f"blocks.{layer}.attn.hook_pattern")  # cross: 2 sides
    queries, n = layout.query_side, layout.n_tokens
    groups = layout.all_groups
    index = {g: i for i, g in enumerate(groups)}
    ids = np.array([index[g] for g in layout.group])
    query_ids = np.array([index[g] for g in queries.group])
    palette = ListedColormap(
        [CLS_COLOR if g == CLS else COLORS[i % 10] for i, g in enumerate(groups)]
    )
    fig = plt.figure(figsize=(7.4, 6.6))
    grid = fig.add_gridspec(
        2,
        4,
        width_ratios=[0.035, 1, 0.1, 0.035],  # the third column holds the query names
        height_ratios=[0.035, 1],
        wspace=0.02,
        hspace=0.02,
    )
    main = fig.add_subplot(grid[1, 1])
    im = main.imshow(pattern.detach().cpu().numpy(), cmap="magma", vmin=0, aspect="auto")
    left, top = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[0, 1])
    for axis, strip in ((left, query_ids[:, None]), (top, ids[None, :])):
        axis.imshow(strip, cmap=palette, vmin=0, vmax=len(groups) - 1, aspect="auto")
    for axis in (left, top, main):
        axis.set_xticks([])
        axis.set_yticks([])
    _name_runs(top, layout, vertical=False)
    _name_runs(left, queries, vertical=True)
    if max(n, queries.n_tokens) <= 60:  # token names fit
        main.set_xticks(range(n), token_labels(layout), rotation=90, fontsize=6)
        main.yaxis.tick_right()
        main.set_yticks(range(queries.n_tokens), token_labels(queries), fontsize=6)
    cross = layout.queries is not None
    left.set_ylabel("query token" + (" (queries)" if cross else ""), fontsize=9)
    main.set_xlabel("key token" + (" (keys)" if cross else ""), fontsize=9)
    fig.colorbar(im, cax=fig.add_subplot(grid[1, 3]), label="attention")
    top.set_title(f"layer {layer}, head {head}: {what}", fontsize=10, pad=6)
    return fig


def _name_runs(strip, layout: TokenLayout, *, vertical: bool) -> None:
    """Write each group's name on a colour strip, at the middle of each run of 3+ tokens."""
    start = 0
    for i in range(1, layout.n_tokens + 1):
        if i == layout.n_tokens or layout.group[i] != layout.group[start]:
            if i - start >= 3:
                mid, name = (start + i - 1) / 2, layout.group[start]
                x, y, rotation = (0, mid, 90) if vertical else (mid, 0, 0)
                strip.text(
                    x, y, name, ha="center", va="center", fontsize=7, color="white",
                    rotation=rotation,
                )  # fmt: skip
            start = i


def _view_inputs(cache: ActivationCache, layer: int, window: int) -> tuple[Any, list, list]:
    """One cached window's patterns of ``layer`` ``[head, query, key]``, the tokens' names and
    the heads' names, for an attention view (checked as `to_circuitsvis` says)."""
    check_type(cache, ActivationCache, "an attention view's cache (model.run_with_cache's)")
    model = check_model(cache.model)
    check_cache(cache, model, [f"blocks.{layer}.attn.hook_pattern"])
    pattern = cache["pattern", layer]
    window = check_int(window, "window", 0, len(pattern) - 1)
    layout = layout_at(model, f"blocks.{layer}.attn.hook_pattern")
    if layout.queries is not None:  # circuitsvis draws attention among one list of tokens
        raise UnsupportedFeatureError(
            f"layer {layer} is a cross-attention ({layout.describe_sides()}): use plot_pattern"
        )
    heads = [f"L{layer}H{h}" for h in range(pattern.shape[1])]
    return pattern[window].detach().cpu(), token_labels(layout), heads


def attention_view_record(cache: ActivationCache, layer: int, *, window: int = 0) -> dict[str, Any]:
    """What ``attention_view.json`` holds for one cached window's ``layer``: the tokens'
    names, the heads' names and every head's pattern (`emg_lens.report.view.view_record`),
    from which ``report.html`` builds the interactive view. Needs no optional package."""
    pattern, tokens, heads = _view_inputs(cache, layer, window)
    return view_record(tokens, heads, pattern.double())


@checked
def to_circuitsvis(
    cache: ActivationCache, layer: int, *, window: int = _NOT_GIVEN, sample: int = _NOT_GIVEN
) -> Any:
    """An interactive CircuitsVis view (``circuitsvis.attention.attention_heads``) of every
    head's pattern in ``layer`` for one cached window (``window``; ``sample=`` is its deprecated
    name), tokens named by `token_labels`. Its ``local_src`` is self-contained; ``str()`` of it
    loads the script from a CDN. Needs ``pip install circuitsvis`` (the ``.[viz]`` extra)."""
    window = _window(window, sample, "to_circuitsvis", 0)
    pattern, tokens, heads = _view_inputs(cache, layer, window)
    circuitsvis = require_circuitsvis("to_circuitsvis")
    return circuitsvis.attention.attention_heads(
        attention=pattern,
        tokens=tokens,
        attention_head_names=heads,
        max_value=float(pattern.max()),  # the strongest weight darkest
        # an encoder attends both ways: CircuitsVis greys the upper triangle (a causal
        # model's future) unless told
        mask_upper_tri=False,
    )
