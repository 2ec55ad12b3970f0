"""Wrong-type calls of public functions (issue 85): each refused at the public door with a
named error naming the argument, what it got and what is accepted, not a raw ``TypeError``,
``AttributeError`` or ``RuntimeError`` from deep inside."""

from __future__ import annotations

import numpy as np

from emg_lens import EncoderConfig
from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info, save_checkpoint
from emg_lens.errors import ArgumentError, InputShapeError
from emg_lens.inspect import direct_attribution, head_importance, plot_pattern, token_labels
from emg_lens.layout import TokenLayout
from emg_lens.models import IsoNet, TinyAttention, attach
from emg_lens.stats.compare import compare

SCORES = "blocks.0.attn.hook_attn_scores"


def _native():
    return IsoNet(EncoderConfig.preset("tiny", seed=0))


def _attached():
    layout = TokenLayout.channel_tokens({"emg": 4}, cls_token=False)
    return attach(TinyAttention(), layout=layout, n_samples=8)


def _hooked(make, hook, point=SCORES):
    def trigger(tmp):
        model = make()
        model.run_with_hooks(model.example_input(2), fwd_hooks=[(point, hook)])

    return trigger


def _cached_with_hooks(make):
    def trigger(tmp):
        model = make()
        model.run_with_cache(model.example_input(2), fwd_hooks=[(SCORES, lambda t, hook: t)])

    return trigger


def _cached(then):
    def trigger(tmp):
        model = _native()
        _, cache = model.run_with_cache(model.example_input(2))
        then(model, cache)

    return trigger


def _float64(scores, hook):
    return scores.double()


def _one_head(scores, hook):
    return scores[:, :1]  # broadcast back silently, until now


def _a_list(scores, hook):
    return scores.tolist()


MODELS = (("native", _native), ("attached", _attached))
ROWS: list[tuple] = [
    *(
        (f"{kind} hook returns float64 scores", _hooked(make, _float64), InputShapeError,
         f"hook at {SCORES} returned torch.float64 [2, ")
        for kind, make in MODELS
    ),
    *(
        (f"{kind} hook returns one head's scores", _hooked(make, _one_head), InputShapeError,
         "[batch, head_index, query_pos, key_pos]")
        for kind, make in MODELS
    ),
    *(
        (f"{kind} hook returns a list", _hooked(make, _a_list), InputShapeError,
         f"hook at {SCORES} returned list")
        for kind, make in MODELS
    ),
    (
        "native pattern hook returns float64",
        _hooked(_native, _float64, "blocks.1.attn.hook_pattern"),
        InputShapeError,
        "hook at blocks.1.attn.hook_pattern returned torch.float64",
    ),
    *(
        (f"{kind} run_with_cache with fwd_hooks", _cached_with_hooks(make), ArgumentError,
         "with model.hooks(fwd_hooks=...)")
        for kind, make in MODELS
    ),
    ("load_checkpoint of an int", lambda tmp: load_checkpoint(123), ArgumentError,
     "load_checkpoint(path), a checkpoint folder, must be a string or a PathLike, got 123"),
    ("load_checkpoint of None", lambda tmp: load_checkpoint(None), ArgumentError, "got None"),
    ("compare on 2-D masked", lambda tmp: compare(np.ones((2, 3)), np.zeros(3)), ArgumentError,
     "compare(masked) must be one number per subject (1-D), got float64 [2, 3]"),
    ("compare on 2-D baseline", lambda tmp: compare([0.5, 0.6], np.zeros((3, 2))),
     ArgumentError, "compare(baseline) must be one number per subject (1-D)"),
    ("compare on None", lambda tmp: compare(None, [1.0, 2.0]), ArgumentError,
     "compare(masked) must be one number per subject (1-D), got None"),
    ("compare on text", lambda tmp: compare(["a", "b"], [1.0, 2.0]), ArgumentError,
     "compare(masked) must be one number per subject (1-D), got ['a', 'b']"),
    ("read_checkpoint_info of an int", lambda tmp: read_checkpoint_info(7), ArgumentError,
     "read_checkpoint_info(path), a checkpoint folder, must be a string or a PathLike, got 7"),
    ("save_checkpoint to an int", lambda tmp: save_checkpoint(_native(), 7), ArgumentError,
     "save_checkpoint(path), a checkpoint folder, must be a string or a PathLike, got 7"),
    ("save_checkpoint of None", lambda tmp: save_checkpoint(None, tmp / "c"), ArgumentError,
     "save_checkpoint(model), an emg_lens model, must be a HookedBiosignalModel, got None"),
    ("head_importance of text windows", lambda tmp: head_importance(_native(), ("abc", [0])),
     InputShapeError, "got str"),
    ("direct_attribution of text labels",
     _cached(lambda model, cache: direct_attribution(model, cache, ["a", "b"])),
     InputShapeError, "labels must be integer class indices [batch=2] (one per cached window)"),
    ("plot_pattern of a text layer",
     _cached(lambda model, cache: plot_pattern(model, cache, "0", 0)), ArgumentError,
     "layer must be an int in 0..1, got '0'"),
    ("token_labels of None", lambda tmp: token_labels(None), ArgumentError,
     "token_labels(layout) (e.g. model.layout) must be a TokenLayout, got None"),
]  # fmt: skip
