"""Relevance patching (RelP, issue 88): the screen's ``estimator="relp"``.

- conservation: under RelP's rules (`relevance_hooks`: the LayerNorm scale a constant, the MLP's
  activation by the identity rule, every attention pattern a constant), with every bias zero,
  the relevance ``x * c`` (``c`` the modified backward's coefficient) sums at every layer's
  residual stream to the window's margin, and a layer's pattern relevances sum to its
  attention output's; the plain gradient conserves neither;
- on a one-layer model whose path from the pattern to the margin is linear, RelP's estimate of
  every candidate is its exact knockout;
- the screen and the discovery study take it by name, a bad name gets the error listing them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emg_lens.discovery import default_family, layer_masks, screen, window_metric
from emg_lens.discovery.screen_hooks import relevance_hooks
from emg_lens.errors import ArgumentError, UnsupportedFeatureError
from tests.tiny import tiny_isonet


def _unbiased(model):
    """``model`` (float64) with every bias (and LayerNorm shift) zero."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("b") or leaf == "bias":
                param.zero_()
    return model


def _coefficients(model, X, y, rules: bool):
    """Each window's margin and, per layer, the residual stream entering it (and the final
    one), the layer's attention pattern and its attention output, each with its coefficient:
    the gradient of the summed margin, under RelP's rules where ``rules``."""
    patterns: dict[int, torch.Tensor] = {}
    kept: dict[str, torch.Tensor] = {}

    def keep(t, hook):
        kept[hook.name] = t

    X = X.detach().requires_grad_(True)  # the first layer's stream in the graph
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"

    def wanted(name: str) -> bool:
        return name.endswith(("hook_resid_pre", "hook_attn_out")) or name == last

    hooks = [(wanted, keep)]
    if rules:
        hooks = relevance_hooks(patterns) + hooks
    else:
        hooks.append((lambda name: name.endswith("hook_pattern"), keep))
    with torch.enable_grad():
        logits = model.run_with_hooks(X, return_type="logits", fwd_hooks=hooks)
        margin = window_metric(logits, y, "margin")
        if not rules:
            patterns = {
                int(name.split(".")[1]): t for name, t in kept.items() if "hook_pattern" in name
            }
        names = sorted(n for n in kept if "hook_pattern" not in n)
        grads = torch.autograd.grad(
            margin.sum(), [kept[n] for n in names] + list(patterns.values())
        )
    coef = dict(zip(names + [f"pattern.{layer}" for layer in patterns], grads))
    acts = {n: kept[n] for n in names} | {f"pattern.{k}": p for k, p in patterns.items()}
    return margin.detach(), acts, coef


@pytest.mark.parametrize("seed", [0, 1])
def test_relevance_is_conserved_under_relps_rules(seed):
    """LRP's conservation, for RelP's rules on a two-layer IsoNet in float64 with every bias
    zero (a bias absorbs relevance, so it is what makes the sums differ otherwise): per window,
    the relevance ``sum(x * c)`` of the residual stream entering each layer, and of the final
    one, equals the margin (the metric the screen linearises; with the biases zero the modified
    network is linear in the stream, and the margin is linear in the logits); per layer, the
    relevance of its attention patterns, ``sum(A * c_A)`` over heads, queries and keys (what
    RelP weighs a cut by), equals its attention output's. The plain gradient does not conserve
    the stream's (LayerNorm, GELU and softmax are not homogeneous); the patterns' it does too,
    the output being bilinear in pattern and values."""
    model = _unbiased(tiny_isonet(seed, init_range=0.6, dtype="float64"))
    X = model.example_input(12).double()
    with torch.no_grad():
        y = model(X).argmax(-1)
    y[::3] = (y[::3] + 1) % model.cfg.n_classes  # margins of both signs
    for rules in (True, False):
        margin, acts, coef = _coefficients(model, X, y, rules)
        streams = [n for n in acts if "resid" in n]
        assert len(streams) == model.cfg.n_layers + 1
        gaps = [(acts[n] * coef[n]).flatten(1).sum(1) - margin for n in streams]
        layers = range(model.cfg.n_layers)
        heads = [
            (acts[f"pattern.{layer}"] * coef[f"pattern.{layer}"]).flatten(1).sum(1)
            - (acts[f"blocks.{layer}.hook_attn_out"] * coef[f"blocks.{layer}.hook_attn_out"])
            .flatten(1)
            .sum(1)
            for layer in layers
        ]
        worst = max(float(g.abs().max()) for g in gaps)
        assert max(float(g.abs().max()) for g in heads) <= 1e-4, rules
        if rules:
            assert worst <= 1e-4, worst
        else:
            assert worst > 1e-2, worst


def _linear_model(seed: int):
    """One layer, no normalisation, the MLP's output zero, two classes: the margin (one logit
    minus the other) is linear in the attention pattern."""
    model = tiny_isonet(
        seed, init_range=0.6, n_layers=1, normalization_type=None, n_classes=2, dtype="float64"
    )
    with torch.no_grad():
        model.blocks[0].mlp.W_out.zero_()
    return model


@pytest.mark.parametrize("seed", [0, 1])
def test_relp_is_exact_where_the_path_after_the_pattern_is_linear(seed):
    """On `_linear_model`, every candidate's RelP estimate (its layer estimated, not computed
    exactly) is its exact knockout; and on the tiny model with
    LayerNorm and GELU between the cut and the margin it is not."""
    model = _linear_model(seed)
    X = model.example_input(16).float().double()  # as the screen's windows: float32 values
    with torch.no_grad():
        y = model(X).argmax(-1)
        y[::4] = 1 - y[::4]
        clean = window_metric(model(X), y, "margin")
        family = default_family(model)
        exact = [
            float(
                (
                    window_metric(model(X, edge_masks=layer_masks(model, [c])), y, "margin") - clean
                ).mean()
            )
            for c in family
        ]
    s = screen(model, (X, y), estimator="relp", exact_last_layer=False)
    table = s.table.sort_index()
    assert set(table["method"]) == {"relp"} and s.estimator == "relp"
    assert max(abs(e) for e in exact) > 0.1
    np.testing.assert_allclose(table["estimate"], exact, atol=1e-9)
    curved = tiny_isonet(seed, init_range=0.6, dtype="float64")
    X = curved.example_input(16).double()
    with torch.no_grad():
        y = curved(X).argmax(-1)
    c = default_family(curved)[20]
    with torch.no_grad():
        cut = curved(X, edge_masks=layer_masks(curved, [c]))
        truth = float(
            (window_metric(cut, y, "margin") - window_metric(curved(X), y, "margin")).mean()
        )
    s = screen(curved, (X, y), family=[c], estimator="relp", exact_last_layer=False)
    assert abs(float(s.table["estimate"].iloc[0]) - truth) > 1e-6


def test_the_relp_screen_marks_its_rows_and_differs_from_the_plain_one(model, data):
    """On the mean head layer 1 is exact in every screen (the same values) and layer 0 is
    RelP's (``method`` relp, finite, not the plain screen's numbers); verify measures it."""
    X, y = data
    plain = screen(model, (X, y), return_type="avg_logits")
    relp = screen(model, (X, y), return_type="avg_logits", estimator="relp")
    p, r = plain.table.sort_index(), relp.table.sort_index()
    assert set(r.loc[r["layer"] == 0, "method"]) == {"relp"}
    last = r["layer"] == 1
    assert set(r.loc[last, "method"]) == {"exact"}
    # the same exact rows and risks, from a forward whose LayerNorms ran unfused (to ~1e-6)
    np.testing.assert_allclose(r.loc[last, "estimate"], p.loc[last, "estimate"], atol=1e-6)
    assert np.isfinite(r["estimate"]).all()
    assert not np.allclose(r.loc[~last, "estimate"], p.loc[~last, "estimate"])
    np.testing.assert_allclose(r["risk"], p["risk"], rtol=1e-4)  # the same pattern change
    assert "relp estimates" in repr(relp)
    table = relp.verify(top=4, flagged=2, sample=2).table
    measured = table[table["exact"].notna() & (table["method"] != "exact")]
    assert len(measured) >= 2 + 2 and (measured["method"] == "relp").all()


def test_an_attached_model_is_refused_by_name():
    """RelP's rules sit on emg_lens's blocks (the LayerNorm scale, the MLP's activation): an
    attached model's own modules have none of those hook points."""
    from emg_lens.layout import TokenLayout
    from emg_lens.models import attach
    from tests.unit.models.attached_models import N_CHANNELS, N_SAMPLES, build

    layout = TokenLayout.channel_tokens({"emg": 2, "acc": 2}, cls_token=False)
    model = attach(build("qkv", 0), layout=layout, n_samples=N_SAMPLES)
    X = torch.zeros(4, N_CHANNELS, N_SAMPLES)
    with pytest.raises(UnsupportedFeatureError, match=r'screen\(estimator="relp"\)'):
        screen(model, (X, torch.zeros(4, dtype=torch.long)), estimator="relp")


@pytest.mark.unchecked
def test_a_bad_estimator_names_every_accepted_one(model, data):
    with pytest.raises(ArgumentError, match=r"screen = 'lrp'; accepted: \['plain', 'ig', 'relp'\]"):
        screen(model, data, estimator="lrp")


def test_the_discovery_spec_and_the_command_take_relp():
    from emg_lens.cli import build_parser
    from emg_lens.cli import discover as discover_cli
    from emg_lens.discovery.spec import DiscoverySpec
    from emg_lens.discovery.study import _estimator_words, check_discovery
    from emg_lens.errors import SpecError

    spec = DiscoverySpec.from_dict({"name": "c", "models": "m", "screen": "relp"})
    assert spec.screen == "relp" and DiscoverySpec.from_dict(spec.to_dict()) == spec
    assert "ig_steps" not in spec.to_dict()
    plain = DiscoverySpec.from_dict({"name": "c", "models": "m"})
    assert spec.fingerprint() != plain.fingerprint()
    with pytest.raises(SpecError, match="ig_steps = 8 is for screen = 'ig'"):
        DiscoverySpec.from_dict({"name": "c", "models": "m", "screen": "relp", "ig_steps": 8})
    with pytest.raises(SpecError, match=r"accepted: \['plain', 'ig', 'relp'\]"):
        DiscoverySpec.from_dict({"name": "c", "models": "m", "screen": "lrp"})
    args = build_parser().parse_args(["discover", "--models", "m", "--screen", "relp"])
    assert discover_cli._spec(args).screen == "relp"
    # what the study's summary and `study check` say of it
    words = _estimator_words(pd.DataFrame({"screen": ["relp"], "ig_steps": [None]}))
    assert words == " (relevance patching, RelP; `screen`)"
    assert ", relp screen, " in check_discovery(spec, layers=2, heads=2).splitlines()[0]
