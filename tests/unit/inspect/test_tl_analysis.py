"""TransformerLens 4.3's subspace interventions through a layout's token groups (issue 58):
`emg_lens.inspect.token_rows` gives the positions ``transformer_lens.tools.analysis`` takes;
its interchange, DAS, norm-matched placebo and both of DAS's controls run on a small IsoNet
trained on a planted truth; and the names and signatures emg_lens and its guide use are pinned
(TransformerLens changes ``tools.analysis`` between minor versions), with the version pin in
pyproject.toml that waits for this test."""

from __future__ import annotations

import inspect
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
import transformer_lens.tools.analysis as tla
from packaging.requirements import Requirement

from emg_lens import EncoderConfig
from emg_lens.errors import ArgumentError, IndexOutOfRangeError, InputShapeError, LayoutError
from emg_lens.inspect import interchange, token_positions, token_rows
from emg_lens.models import IsoNet

ROOT = Path(__file__).resolve().parents[3]
HOOK = "blocks.0.hook_resid_pre"
P, K = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
E = inspect.Parameter.empty

# --------------------------------------------------------------------------- TL's API, pinned

USED = {
    "collect_activations": [
        ("model", P, E), ("hook_name", P, E), ("inputs", P, E), ("task_logits", P, E),
        ("positions", K, None), ("batch_size", K, 256),
    ],
    "run_with_intervention": [
        ("model", P, E), ("hook_name", P, E), ("intervention", P, E), ("base_inputs", P, E),
        ("source_activations", P, E), ("task_logits", P, E), ("positions", K, None),
    ],
    "intervened_logits": [
        ("model", P, E), ("hook_name", P, E), ("intervention", P, E), ("base_inputs", P, E),
        ("source_activations", P, E), ("task_logits", P, E), ("positions", K, None),
        ("batch_size", K, 256),
    ],
    "fit_das": [
        ("model", P, E), ("hook_name", P, E), ("base_inputs", P, E), ("source_inputs", P, E),
        ("targets", P, E), ("task_logits", P, E), ("rank", K, E), ("base_positions", K, None),
        ("source_positions", K, None), ("epochs", K, 20), ("batch_size", K, 128),
        ("lr", K, 1e-2), ("strength", K, 1.0), ("seed", K, 0), ("device", K, None),
        ("micro_batch_size", K, None),
    ],
    "SubspaceInterchange": [("basis", P, E), ("strength", P, 1.0)],
    "NormMatchedPlacebo": [("reference", P, E), ("basis", P, E)],
    "mean_difference_basis": [("activations", P, E), ("labels", P, E)],
    "random_basis": [("d_model", P, E), ("rank", P, E), ("seed", P, E)],
    "arbitrary_targets": [("keys", P, E), ("n_classes", P, E), ("seed", P, E)],
    "reinitialized": [("model", P, E), ("seed", P, E)],
}  # fmt: skip
"""The names emg_lens, its tests and its guide use, with their parameters as TransformerLens
4.3 defines them: (name, kind, default)."""


@pytest.mark.parametrize("name", sorted(USED))
def test_the_tools_used_keep_their_names_and_signatures(name):
    assert name in tla.__all__
    params = inspect.signature(getattr(tla, name)).parameters.values()
    assert [(p.name, p.kind, p.default) for p in params] == USED[name]


def test_das_results_keep_the_fields_read():
    fields = inspect.signature(tla.interchange.DASResult).parameters
    assert list(fields) == ["subspace", "losses", "hook_name", "rank"]
    assert isinstance(inspect.getattr_static(tla.interchange.DASResult, "basis"), property)


def test_transformer_lens_is_pinned_to_the_minor_version_this_api_is_checked_on():
    """Until this file passes on 4.4, pyproject.toml allows 4.3 only."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in deps if Requirement(d).name == "transformer-lens"]
    assert str(pin.specifier) in ("<4.4,>=4.3", ">=4.3,<4.4")
    assert version("transformer-lens") in pin.specifier


# --------------------------------------------------------------------------- the positions


def _model(**overrides):
    return IsoNet(EncoderConfig.preset("tiny", **{"seed": 0, **overrides})).eval()


def test_a_group_is_its_layout_positions_and_rows_pair_window_by_window():
    model = _model()
    assert token_positions(model, "acc") == ("acc", [3, 4, 5, 6])
    assert token_positions(model, "within(emg)") == ("within(emg)", [1, 2])
    assert token_positions(model, np.array([6, 0])) == ("positions [6, 0]", [6, 0])
    X = model.example_input(3)
    rows = token_rows(model, X, "emg")
    assert rows.window.tolist() == [0, 0, 1, 1, 2, 2]
    assert rows.positions.tolist() == [1, 2, 1, 2, 1, 2]
    assert torch.equal(rows.inputs, X.repeat_interleave(2, dim=0))
    assert rows.per_row(np.array([5, 6, 7])).tolist() == [5, 5, 6, 6, 7, 7]


@pytest.mark.unchecked
@pytest.mark.parametrize(
    ("tokens", "error", "match"),
    [
        ("pooled", ArgumentError, "mean of the channel tokens"),
        ("ecg", LayoutError, "unknown token group 'ecg'"),
        ([7], IndexOutOfRangeError, "position 7 is not a token"),
        ([1, 1], ArgumentError, "repeat"),
        ([], ArgumentError, "non-empty sequence of integer positions"),
        ([1.0], ArgumentError, "integer positions"),
        ([True], ArgumentError, "integer positions"),
    ],
)
def test_what_is_no_token_group_is_refused_by_name(tokens, error, match):
    with pytest.raises(error, match=match):
        token_positions(_model(), tokens)


def test_windows_must_be_a_batch_and_values_one_per_window():
    model = _model()
    with pytest.raises(InputShapeError, match=r"a batch \[n, channels, time\]"):
        token_rows(model, model.example_input(1)[0], "acc")
    with pytest.raises(InputShapeError, match="one value per window"):
        token_rows(model, model.example_input(2), "acc").per_row([0, 1, 2])


def test_a_full_interchange_at_each_row_replaces_that_token_of_that_window():
    """The rows reach the tokens the layout names: a full-rank interchange at row ``r`` is the
    base window with its token ``positions[r]`` taken from the source window."""
    model = _model(init_range=0.5)
    base, source = model.example_input(4), model.example_input(5)[1:]
    rows, srows = token_rows(model, base, "acc"), token_rows(model, source, "acc")
    acts = tla.collect_activations(model, HOOK, srows.inputs, model, positions=srows.positions)
    full = tla.SubspaceInterchange(torch.eye(model.cfg.d_model))
    got = tla.intervened_logits(
        model, HOOK, full, rows.inputs, acts, model, positions=rows.positions
    )
    _, cache = model.run_with_cache(source, names_filter=[HOOK])
    for r, (w, p) in enumerate(zip(rows.window.tolist(), rows.positions.tolist())):

        def take(act, hook, w=w, p=p):
            act[:, p] = cache[HOOK][w, p]
            return act

        want = model.run_with_hooks(base[w : w + 1], fwd_hooks=[(HOOK, take)])
        torch.testing.assert_close(got[r], want[0], rtol=0, atol=1e-5)
    assert not torch.allclose(got, model(rows.inputs), atol=1e-3)  # the swaps change logits


def test_a_full_interchange_of_a_one_token_group_is_emg_lens_own_interchange():
    model = _model(init_range=0.5)
    base, source = model.example_input(6), model.example_input(7)[1:]
    y = np.zeros(6, dtype=int)
    ours = interchange(model, (base, y), (source, y + 1), layer=0, group="cls")
    rows, srows = token_rows(model, base, "cls"), token_rows(model, source, "cls")
    acts = tla.collect_activations(model, HOOK, srows.inputs, model, positions=srows.positions)
    full = tla.SubspaceInterchange(torch.eye(model.cfg.d_model))
    theirs = tla.intervened_logits(
        model, HOOK, full, rows.inputs, acts, model, positions=rows.positions
    )
    np.testing.assert_allclose(theirs.numpy(), ours.logits["intervened"], rtol=0, atol=1e-5)


# ---------------------------------------------------------------- DAS and its controls, planted

ACC_0 = 3  # the token of ACC channel 0 (input channel 2): where the class is planted


@pytest.fixture(scope="module")
def planted():
    """A tiny two-class IsoNet trained on windows whose class is ACC channel 0's offset, and
    paired windows at the ACC tokens: the high-level model says the output follows the source
    at ACC channel 0's token and stays the base's at the other ACC tokens."""
    torch.manual_seed(0)
    model = IsoNet(EncoderConfig.preset("tiny", seed=0, n_classes=2))
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(320, 6, 8, generator=gen)
    y = torch.arange(320) % 2
    X[:, 2] += 1.5 * (2 * y[:, None] - 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(120):
        batch = torch.randint(192, (32,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(X[batch]), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()

    def pairs(part):
        base, labels = X[part], y[part]
        source, source_labels = base.roll(1, 0), labels.roll(1, 0)
        rows, srows = token_rows(model, base, "acc"), token_rows(model, source, "acc")
        at = rows.positions == ACC_0
        target = torch.where(at, srows.per_row(source_labels), rows.per_row(labels))
        differ = at & (rows.per_row(labels) != srows.per_row(source_labels))
        return rows, srows, target, differ

    accuracy = (model(X[192:]).argmax(1) == y[192:]).float().mean().item()
    return model, pairs(slice(0, 192)), pairs(slice(192, 320)), accuracy


def _scores(model, intervention, pairs):
    """(IIA at ACC channel 0's token over pairs whose labels differ, the share of the other
    ACC tokens' rows where the output stays the base's)."""
    rows, srows, target, differ = pairs
    acts = tla.collect_activations(model, HOOK, srows.inputs, model, positions=srows.positions)
    logits = tla.intervened_logits(
        model, HOOK, intervention, rows.inputs, acts, model, positions=rows.positions
    )
    hit = logits.argmax(1) == target
    other = rows.positions != ACC_0
    return hit[differ].float().mean().item(), hit[other].float().mean().item()


def _das(model, pairs, targets=None):
    rows, srows, target, _ = pairs
    return tla.fit_das(
        model, HOOK, rows.inputs, srows.inputs, target if targets is None else targets, model,
        rank=1, base_positions=rows.positions, source_positions=srows.positions, epochs=8,
    )  # fmt: skip


@pytest.mark.slow
def test_das_finds_the_planted_token_and_beats_the_placebo_and_a_random_subspace(planted):
    model, train, test, accuracy = planted
    assert accuracy > 0.95
    das = _das(model, train)
    swap = tla.SubspaceInterchange(das.basis)
    iia, kept = _scores(model, swap, test)
    assert iia > 0.9 and kept > 0.9, (iia, kept)
    random = tla.random_basis(model.cfg.d_model, 1, seed=1)
    placebo_iia, _ = _scores(model, tla.NormMatchedPlacebo(swap, random), test)
    random_iia, _ = _scores(model, tla.SubspaceInterchange(random), test)
    assert placebo_iia < 0.75 and random_iia < 0.75, (placebo_iia, random_iia)
    # the difference of class means at that token is the same direction
    rows, _, _, _ = train
    at = rows.positions == ACC_0
    acts = tla.collect_activations(
        model, HOOK, rows.inputs[at], model, positions=rows.positions[at]
    )
    labels = model(rows.inputs[at]).argmax(1).tolist()
    means = tla.mean_difference_basis(acts, labels)
    assert (means.T @ das.basis).abs().item() > 0.8


@pytest.mark.slow
def test_das_controls_arbitrary_labels_and_a_random_init_model_fall_short(planted):
    model, train, test, _ = planted
    rows, srows, _, _ = train
    keys = list(zip(srows.window.tolist(), srows.positions.tolist()))  # the source token
    arbitrary = tla.arbitrary_targets(keys, n_classes=2, seed=0)
    fitted = _das(model, train, arbitrary)
    acts = tla.collect_activations(model, HOOK, srows.inputs, model, positions=srows.positions)
    logits = tla.intervened_logits(
        model, HOOK, tla.SubspaceInterchange(fitted.basis), rows.inputs, acts, model,
        positions=rows.positions,
    )  # fmt: skip
    assert (logits.argmax(1) == arbitrary).float().mean().item() < 0.75
    untrained = tla.reinitialized(model, seed=0)
    iia, _ = _scores(untrained, tla.SubspaceInterchange(_das(untrained, train).basis), test)
    assert iia < 0.75, iia
