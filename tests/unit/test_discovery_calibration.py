"""The calibrated screen (issue 25): exact last-layer effects, the risk of each estimate, and
`Screen.verify`'s flagged, top and sampled exact passes with the bound on what it missed.

- a last-layer cut's screen effect is the masked model's effect, on every model kind the
  screen takes (pre- and post-LN, CLS and mean-pooled readouts, a head structure, a base cut);
- the risk is 0 where nothing is estimated and grows with the change a cut writes;
- verify measures what it says it measures, and its bound is a Clopper-Pearson bound.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from emg_lens import EncoderConfig
from emg_lens.discovery import ExactPasses, default_family, layer_masks, screen
from emg_lens.discovery.screen import _clopper_pearson_upper
from emg_lens.edges import parse
from emg_lens.errors import ArgumentError
from emg_lens.models import IsoNet, TinyMyo
from tests.unit.converted_models import cbramod_model, torch_encoder_model


def _isonet():
    return IsoNet(EncoderConfig.preset("tiny", seed=3, init_range=0.6)).eval()


def _tinymyo():
    cfg = EncoderConfig.preset(
        "tinymyo", n_layers=2, modalities={"emg": 2}, n_samples=160, init_range=0.3
    )
    return TinyMyo(cfg, task="classification").eval()


MODELS = {
    "isonet_cls": (_isonet, "logits", None),
    "isonet_mean": (_isonet, "avg_logits", None),
    "isonet_base": (_isonet, "avg_logits", "cross_modal & layers(1) - between(emg,acc)"),
    "tinymyo": (_tinymyo, "logits", None),
    "torch_pre_ln": (lambda: torch_encoder_model(1)[0].eval(), "logits", None),
    "torch_post_ln": (lambda: torch_encoder_model(2, norm_first=False)[0].eval(), "logits", None),
    "cbramod": (lambda: cbramod_model(4)[0].eval(), "logits", None),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_last_layer_effects_are_the_masked_models_effects(name):
    build, return_type, base = MODELS[name]
    if name == "cbramod":
        pytest.importorskip("braindecode")
    model = build()
    X = model.example_input(24)
    with torch.no_grad():
        y = model(X, return_type=return_type).argmax(-1)
    y[::3] = (y[::3] + 1) % 3  # wrong windows too: margins of both signs
    base = None if base is None else parse(base)
    s = screen(model, (X, y), return_type=return_type, base=base, batch_size=10)
    passes = ExactPasses(model, X, y, metric="margin", return_type=return_type, base=base)
    full = passes.score({})
    table = s.table.sort_index()
    last = model.cfg.n_layers - 1
    assert (table["method"] == np.where(table["layer"] == last, "exact", "linear")).all()
    for i, candidate in enumerate(s.family):
        if candidate.layer != last:
            continue
        got = passes.score(layer_masks(model, [candidate]))
        assert table.loc[i, "estimate"] == pytest.approx(got.metric - full.metric, abs=2e-5)
        assert table.loc[i, "estimate_accuracy"] == pytest.approx(got.accuracy - full.accuracy)
        assert table.loc[i, "risk"] == 0.0


def test_a_cut_the_readout_cannot_see_is_exactly_zero():
    """The CLS head reads token 0 only: a last-layer cut of other query rows changes nothing,
    and so does a cut inside the base."""
    model = _isonet()
    X = model.example_input(16)
    y = model(X).argmax(-1)
    base = parse("cross_modal & layers(1)")
    table = screen(model, (X, y), base=base).table
    last = table[table["layer"] == 1]
    unseen = last[last["query_group"] != "cls"]
    inside = last[last["kind"].isin(["emg->acc", "acc->emg"])]
    assert (unseen["estimate"] == 0).all() and (inside["estimate"] == 0).all()
    assert (last[last["query_group"] == "cls"]["estimate"] != 0).any()


def test_the_risk_grows_with_the_change_a_cut_writes():
    """Risk is the mean squared change of the attention output: a candidate inside the base
    has none; scaling the values (W_V) by 2 scales every risk by 4."""
    model = _isonet()
    X = model.example_input(16)
    y = model(X).argmax(-1)
    base = parse("cross_modal & layers(0)")
    before = screen(model, (X, y), base=base).table.sort_index()
    linear = before[before["method"] == "linear"]
    inside = linear["kind"].isin(["emg->acc", "acc->emg"])
    assert (linear.loc[inside, "risk"] == 0).all() and (linear.loc[~inside, "risk"] > 0).all()
    with torch.no_grad():
        model.blocks[0].attn.W_V.mul_(2)
        model.blocks[0].attn.b_V.mul_(2)
    after = screen(model, (X, y), base=base).table.sort_index()
    ratio = after.loc[linear.index[~inside], "risk"] / linear.loc[~inside, "risk"]
    assert np.allclose(ratio, 4.0, rtol=1e-4)


def test_verify_measures_the_flagged_the_top_and_a_sample():
    model = _isonet()
    X = model.example_input(32)
    y = model(X).argmax(-1)
    s = screen(model, (X, y))
    v = s.verify(top=5, flagged=6, sample=8, seed=1)
    table = v.table
    linear = s.table[s.table["method"] == "linear"]
    riskiest = set(linear["risk"].nlargest(6).index)
    measured = table[table["exact"].notna()]
    assert riskiest <= set(measured.index)  # a flagged row in the top is labelled "top"
    assert set(table.index[table["verified"] == "flagged"]) <= riskiest
    assert (table["verified"] == "sample").sum() == 8
    assert (measured["method"] == "linear").all()
    assert (table["final"] == table["exact"].fillna(table["estimate"])).all()
    passes = ExactPasses(model, X, y, metric="margin", return_type="logits")
    full = passes.score({})
    for i in measured.index[:6]:
        assert table.loc[i, "exact"] == pytest.approx(
            passes.score(layer_masks(model, [s.family[i]])).metric - full.metric, abs=1e-5
        )
    # every candidate ranked above the top-5 threshold is known exactly
    top = table.head(5)
    assert (top["exact"].notna() | (top["method"] == "exact")).all()
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    hits = int(v.agreement["sample_hits"])
    assert v.agreement["missed_rate_upper"] == pytest.approx(_clopper_pearson_upper(hits, 8))
    unmeasured = (table["exact"].isna() & (table["method"] == "linear")).sum()
    assert v.agreement["missed_upper"] == pytest.approx(
        v.agreement["missed_rate_upper"] * unmeasured
    )
    # the same seed draws the same sample
    again = s.verify(top=5, flagged=6, sample=8, seed=1).table
    assert list(again["verified"]) == list(table["verified"])


@pytest.mark.parametrize(("hits", "n"), [(0, 1), (0, 10), (2, 10), (5, 7), (9, 10)])
def test_the_miss_bound_is_the_one_sided_clopper_pearson_bound(hits, n):
    """A one-sided 95 % upper bound is the upper end of the two-sided 90 % interval."""
    ci = sps.binomtest(hits, n).proportion_ci(confidence_level=0.90, method="exact")
    assert _clopper_pearson_upper(hits, n) == pytest.approx(ci.high, rel=1e-9)
    assert _clopper_pearson_upper(n, n) == 1.0 and np.isnan(_clopper_pearson_upper(0, 0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"flagged": -1}, "flagged must be an int >= 0"),
        ({"flagged": 1.5}, "flagged must be an int >= 0"),
        ({"sample": True}, "sample must be an int >= 0"),
        ({"top": 0}, "top must be an int"),
    ],
)
def test_verify_refuses_bad_budgets(kwargs, match):
    model = _isonet()
    X = model.example_input(8)
    s = screen(model, (X, model(X).argmax(-1)), family=default_family(model)[:9])
    with pytest.raises(ArgumentError, match=match):
        s.verify(**{"top": 3, **kwargs})
