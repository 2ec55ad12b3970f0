"""Linear probes and interchange interventions (issue 39 items 1, 2): named errors for what a
model lacks and for labels a probe cannot use, a probe finds a planted channel and a regression
target, the control task, and an interchange through edges computed exactly. Issue 46 item 3:
probes fold by trial (the control then at chance where window folds let the probe recognise
trials), refuse a class with fewer trials than folds, and the IIA's interval counts trials."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emg_lens import ArgumentError, InputShapeError, LayoutError
from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import all_edges, no_edges
from emg_lens.errors import IndexOutOfRangeError
from emg_lens.inspect import interchange, interchange_pairs, probe_tokens
from emg_lens.inspect import probes as probes_module
from emg_lens.inspect.probes import Folds, _control, fold_windows, token_group
from emg_lens.models import TinyMyo
from emg_lens.stats.compare import clopper_pearson
from tests.tiny import tiny_isonet, tinymyo_config


def _windows(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes; class 1 raises channel 0 (sEMG) over the whole window."""
    X = torch.randn(n, 6, 8, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(n) % 2
    X[:, 0] += 2.0 * y[:, None]
    return X, y


@pytest.fixture(scope="module")
def model():
    return tiny_isonet(perturb=True, init_range=0.5)


def test_a_probe_finds_the_channel_that_carries_the_label_and_not_the_others(model):
    table = probe_tokens(model, _windows(), layers=[0, 2], groups=["emg", "acc", "pooled"])
    assert list(table.columns) == [
        "layer", "group", "accuracy", "control_accuracy", "selectivity", "chance", "n",
        "trials", "folds", "fold_unit",
    ]  # fmt: skip
    assert (table["trials"] == 40).all() and (table["fold_unit"] == "window").all()
    first = table[table["layer"] == 0].set_index("group")
    assert first.loc["emg", "accuracy"] >= 0.9 and first.loc["acc", "accuracy"] <= 0.75
    assert np.allclose(table["selectivity"], table["accuracy"] - table["control_accuracy"])
    # (X, y) windows know no trials: each is its own, so the control labels of the held-out
    # windows were never seen, and no probe gets far above chance on them
    assert (table["control_accuracy"] <= 0.75).all()


def test_layer_n_is_the_stream_after_the_last_block(model):
    table = probe_tokens(model, _windows(), groups=["cls"])
    assert table["layer"].tolist() == [0, 1, 2]
    match = (
        r"layers for hook 'attn_out' on this 2-layer model must be one or more integers in 0\.\.1"
    )
    with pytest.raises(IndexOutOfRangeError, match=match):
        probe_tokens(model, _windows(), layers=[2], hook="attn_out")


def test_a_float_target_is_a_regression_scored_by_r2(model):
    X, _ = _windows()
    level = X[:, 0].mean(-1).numpy().astype(np.float64)  # channel 0's level, read off its token
    table = probe_tokens(model, (X, torch.zeros(40).long()), labels=level, layers=[0],
                         groups=["emg", "acc"]).set_index("group")  # fmt: skip
    assert table.loc["emg", "accuracy"] > 0.8 and table.loc["acc", "accuracy"] < 0.3
    assert (table["chance"] == 0.0).all()


def test_the_control_relabels_trials_so_a_probe_that_knows_trials_solves_it(model):
    # Four trials (class x repetition) whose windows share a trial-specific offset on channel
    # 3 (ACC): the ACC tokens cannot tell the classes apart across trials, but they recognise
    # trials, so a control that gives the trials of one offset one label is theirs to solve.
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(80, 6, 8, generator=gen)
    y = np.arange(80) % 2
    rep = (np.arange(80) // 2) % 2 + 1
    trial = y * 2 + (rep - 1)
    offset = np.array([0.0, 1.0, 1.0, 0.0])[trial]
    X[:, 3] += 4.0 * torch.as_tensor(offset, dtype=torch.float32)[:, None]
    data = SubjectData.from_windows(
        {"emg": 2, "acc": 4},
        (X.numpy(), y),
        subject=1,
        classes=[0, 1, 2, 3],
        meta={"trial_unit": "repetition"},
    )
    data.rep_test = rep
    trials = data.test_trials  # numbered as the probe numbers them
    aligned = [s for s in range(6) if abs(np.corrcoef(_control(y, trials, s), offset)[0, 1]) > 0.99]
    assert aligned, "no seed's permutation follows the offsets"  # numpy's generator: fixed
    for seed in aligned:
        row = probe_tokens(model, data, layers=[0], groups=["acc"], seed=seed).iloc[0]
        assert row["control_accuracy"] >= 0.9 and row["accuracy"] <= 0.75, row


@pytest.mark.unchecked
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"groups": ["eeg"]}, LayoutError, "unknown token group 'eeg'"),
        ({"groups": [3]}, ArgumentError, "a probe's group must be"),
        ({"layers": [5]}, IndexOutOfRangeError, "layers for hook .* must be one or more integers"),
        ({"hook": "resid"}, ArgumentError, "hook must be one of"),
        ({"labels": np.zeros(3, int)}, InputShapeError, "one value per window"),
        ({"labels": np.zeros(40, int)}, ArgumentError, "at least two classes"),
        ({"classes": [1]}, ArgumentError, "at least two classes"),
        ({"classes": [7]}, ArgumentError, "class indices"),
        ({"classes": [0, True]}, ArgumentError, r"class indices.* in 0\.\.3, got \[0, True\]"),
        ({"folds": 50}, ArgumentError, r"fewer windows \(40\) than folds \(50\)"),
        ({"folds": 1}, ArgumentError, "folds must be an int >= 2"),
    ],
)
def test_bad_inputs_are_named(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        probe_tokens(model, _windows(), **kwargs)


def test_non_finite_activations_and_targets_are_errors_never_results(model):
    X, y = _windows()
    broken = tiny_isonet(perturb=True, init_range=0.5)
    with torch.no_grad():
        broken.blocks[0].attn.W_V.fill_(float("nan"))
    with pytest.raises(InputShapeError, match="holds non-finite values"):
        probe_tokens(broken, (X, y), layers=[1])
    with pytest.raises(ArgumentError, match="labels hold non-finite values"):
        probe_tokens(model, (X, y), labels=np.full(40, np.nan))


def test_fewer_trials_of_a_class_than_folds_is_named(model):
    X, y = _windows()
    y[:37] = 0  # (X, y) windows: each its own trial
    with pytest.raises(ArgumentError, match=r"class 1 has 2 trial\(s\), fewer than folds=5"):
        probe_tokens(model, (X, y), folds=5)
    # with repetitions, leaving one out stands in, unless a class sits in one repetition only
    data = _trial_data(classes=2, reps=3, per_trial=4)
    data.rep_test[data.y_test == 1] = 1
    with pytest.raises(ArgumentError, match=r"class 1 has 1 trial\(s\), fewer than folds=5; leav"):
        probe_tokens(model, data, layers=[0], groups=["emg"])


def _trial_data(classes: int, reps: int, per_trial: int, seed: int = 0) -> SubjectData:
    """``classes x reps`` trials of ``per_trial`` windows each: class ``c`` raises sEMG channel
    0 by ``5 c``; every trial adds its own random pattern to every channel (what its windows
    share: posture, placement), and each window a little noise of its own."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.tile(np.arange(classes), reps), per_trial)
    rep = np.repeat(np.repeat(np.arange(1, reps + 1), classes), per_trial)
    trial = np.repeat(np.arange(classes * reps), per_trial)
    signature = rng.normal(0, 1.5, (classes * reps, 6, 8))
    X = signature[trial] + rng.normal(0, 0.3, (len(y), 6, 8))
    X[:, 0] += 5.0 * y[:, None]
    meta = {"trial_unit": "repetition"}
    data = SubjectData.from_windows({"emg": 2, "acc": 4}, (X.astype(np.float32), y),
                                    classes=[0, 1, 2, 3], meta=meta)  # fmt: skip
    data.rep_test = rep
    return data


def test_folds_by_trial_keep_the_control_at_chance_where_window_folds_recognise_trials(
    model, monkeypatch
):
    # 20 trials of 6 windows; the ACC tokens carry each trial's signature and no class
    data = _trial_data(classes=2, reps=10, per_trial=6)
    by_trial = probe_tokens(model, data, layers=[0], groups=["emg", "acc"]).set_index("group")
    print(by_trial.round(3))
    assert (by_trial["fold_unit"] == "trial").all() and (by_trial["trials"] == 20).all()
    assert by_trial.loc["emg", "accuracy"] >= 0.9  # the class is read across trials
    assert (by_trial["control_accuracy"] <= by_trial["chance"] + 0.25).all()

    def window_folds(target, trials, repetitions, folds, *, seed=0, **_):
        from sklearn.model_selection import StratifiedKFold

        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(target, target)
        return Folds(list(splits), "window", len(np.unique(trials)))

    monkeypatch.setattr(probes_module, "fold_windows", window_folds)
    by_window = probe_tokens(model, data, layers=[0], groups=["emg", "acc"]).set_index("group")
    print(by_window.round(3))
    # split over windows, a held-out window's trial is in the training folds: the control's
    # trial labels are read off the signature
    assert by_window.loc["acc", "control_accuracy"] >= 0.9  # 1.00 measured (by trial: 0.46)
    assert by_window.loc["emg", "control_accuracy"] >= 0.8  # 0.90 (by trial: 0.48)


def test_no_fold_starts_from_a_probe_fitted_on_its_test_trials():
    # 40 trials of 10 windows whose 128 features are each trial's signature; the label (trial
    # mod 4) is carried by nothing. A probe warm-started from the previous fold's solution,
    # which was fitted on this fold's test trials, decoded it at 0.86 (chance 0.25).
    rng = np.random.default_rng(0)
    trial = np.repeat(np.arange(40), 10)
    y, rep = trial % 4, trial // 4 + 1
    X = (4.0 * rng.standard_normal((40, 128)))[trial] + rng.standard_normal((400, 128))
    found = fold_windows(y, trial, rep, 5)
    assert found.unit == "trial"
    (accuracy,) = probes_module._cross_validate(X, [y], found.splits, False)
    assert accuracy <= 0.25 + 0.15  # 0.21 measured


def test_trials_of_another_shape_than_the_target_are_named():
    y = np.repeat([0, 1], 6)
    with pytest.raises(InputShapeError, match="one value per window"):
        fold_windows(y, np.arange(11), np.ones(12, int), folds=2)


def test_few_trials_leave_one_repetition_out():
    data = _trial_data(classes=3, reps=4, per_trial=2)
    found = fold_windows(data.y_test, data.test_trials, data.rep_test, folds=5)
    assert (found.unit, found.n, found.trials) == ("repetition", 4, 12)
    for train, test in found.splits:
        assert len(set(data.rep_test[test])) == 1
        assert not set(data.rep_test[test]) & set(data.rep_test[train])
    grouped = fold_windows(data.y_test, data.test_trials, data.rep_test, folds=3)
    assert (grouped.unit, grouped.n) == ("trial", 3)
    for train, test in grouped.splits:  # no trial on both sides
        assert not set(data.test_trials[test]) & set(data.test_trials[train])


def test_an_edge_expressions_tokens_are_the_queries_of_its_edges(model):
    assert token_group(model, "within(emg)")[1] == list(model.layout.positions("emg"))
    assert token_group(model, "between(acc,emg)")[:2] == ("between(acc,emg)", [3, 4, 5, 6])
    with pytest.raises(LayoutError, match="selects no edge"):
        token_group(model, "no_edges")


def test_interchanging_every_edge_is_interchanging_the_attention_output(model):
    X, y = _windows(6)
    source = (X.flip(0), y.flip(0))
    for layer in (0, 1):
        edges = interchange(model, (X, y), source, layer=layer, edges=all_edges())
        # the same by hand: the base run with this layer's z taken from the source
        name = f"blocks.{layer}.attn.hook_z"
        _, cache = model.run_with_cache(source[0], names_filter=name)
        source_z = cache[name]
        by_hand = model.run_with_hooks(X, fwd_hooks=[(name, lambda z, hook, s=source_z: s)])
        torch.testing.assert_close(
            torch.as_tensor(edges.logits["intervened"]), by_hand.detach(), rtol=1e-5, atol=1e-5
        )
        nothing = interchange(model, (X, y), source, layer=layer, edges=no_edges())
        np.testing.assert_allclose(nothing.logits["intervened"], nothing.logits["base"], atol=1e-5)


def test_iia_counts_pairs_whose_labels_differ(model):
    X, y = _windows(6)
    result = interchange(model, (X, y), (X.flip(0), y.flip(0)), layer=2, group="cls")
    differ = result.pairs[result.pairs["base_label"] != result.pairs["source_label"]]
    assert result.n == len(differ) == 6
    assert result.iia == pytest.approx(differ["follows_source"].mean())
    assert result.ci_low <= result.iia <= result.ci_high
    assert set(result.logits) == {"base", "source", "intervened"}


def test_interchange_bad_inputs_are_named(model):
    X, y = _windows(6)
    with pytest.raises(ArgumentError, match="exactly one of group="):
        interchange(model, (X, y), (X, y), layer=0)
    with pytest.raises(InputShapeError, match="pair window by window"):
        interchange(model, (X, y), (X[:3], y[:3]), layer=0, group="acc")
    with pytest.raises(LayoutError, match="unknown token group"):
        interchange(model, (X, y), (X, y), layer=0, group="eeg")
    with pytest.raises(
        IndexOutOfRangeError, match=r"layer \(with edges=\) must be an int in 0\.\."
    ):
        interchange(model, (X, y), (X, y), layer=2, edges="cross_modal")
    with pytest.raises(ArgumentError, match="mean over tokens"):
        interchange(model, (X, y), (X, y), layer=0, group="pooled")


@pytest.mark.unchecked  # a base that is no tuple, refused by emg_lens's own check
def test_interchange_windows_and_labels_it_cannot_pair_are_named(model):
    X, y = _windows(6)
    with pytest.raises(ArgumentError, match=r"base must be \(X, y\) or interchange_pairs'"):
        interchange(model, X, (X, y), layer=0, group="acc")
    with pytest.raises(InputShapeError, match=r"source's labels y must be 6 integers"):
        interchange(model, (X, y), (X, y.float()), layer=0, group="acc")
    with pytest.raises(ArgumentError, match=r"base labels must be in \[0, \d+\], got 0\.\.99"):
        interchange(model, (X, torch.where(y == y.max(), 99, y)), (X, y), layer=0, group="acc")
    overflowing = tiny_isonet(perturb=True, init_range=0.5)
    with torch.no_grad():
        overflowing.blocks[1].attn.W_V.fill_(float("inf"))  # after the read-out stream
    with pytest.raises(InputShapeError, match=r"the intervention \(.*\) gave NaN or inf"):
        interchange(overflowing, (X, y), (X, y), layer=1, group="acc")
    apart = _two_repetitions()
    apart.rep_test = np.array([1, 1, 2, 2, 1, 1, 2, 2])  # class 0 in repetition 1, 1 in 2
    with pytest.raises(ArgumentError, match=r"no windows to pair .* in the same repetition"):
        interchange_pairs(apart, [(0, 1)])


def _two_repetitions() -> SubjectData:
    X = np.random.default_rng(0).normal(size=(8, 6, 8)).astype(np.float32)
    data = SubjectData.from_windows({"emg": 2, "acc": 4}, (X, np.array([0, 0, 1, 1] * 2)),
                                    meta={"trial_unit": "repetition"})  # fmt: skip
    data.rep_test = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    return data


def test_pairs_share_a_repetition():
    data = _two_repetitions()
    (_, by, bt), (sx, sy, st) = interchange_pairs(data, [(0, 1)])
    assert by.tolist() == [0, 0, 0, 0] and sy.tolist() == [1, 1, 1, 1]
    assert bt.tolist() == [0, 0, 2, 2] and st.tolist() == [1, 1, 3, 3]
    np.testing.assert_array_equal(sx, data.X_test[[2, 3, 6, 7]])


@pytest.mark.unchecked  # a float class index, refused by emg_lens's own check
def test_a_pair_of_no_class_indices_is_named():
    for pair in [(0, 9), (True, 1), (0.0, 1)]:  # a bool or a float is no class index
        with pytest.raises(ArgumentError, match=rf"class_pairs holds .*, got \({pair[0]}, "):
            interchange_pairs(_two_repetitions(), [pair])


def test_any_encoder_a_tinymyo_of_channel_patch_tokens():
    model = TinyMyo(tinymyo_config(3, 8, patch_samples=2, seed=0)).eval()
    X = torch.randn(40, 3, 8, generator=torch.Generator().manual_seed(3))
    y = torch.arange(40) % 2
    X[:, 0] += 2.0 * y[:, None]
    table = probe_tokens(model, (X, y), layers=[0], groups=["emg", "pooled", "same_channel"])
    assert table["group"].tolist() == ["emg", "pooled", "same_channel"]
    assert table.set_index("group").loc["emg", "accuracy"] >= 0.9
    swap = interchange(model, (X, y), (X.roll(1, 0), y.roll(1, 0)), layer=1, edges="cross_channel")
    assert swap.n == 40 and 0.0 <= swap.ci_low <= swap.iia <= swap.ci_high <= 1.0


def test_the_iia_interval_counts_trials_not_pairs(model):
    # After the last block the CLS head reads the CLS token: the intervened prediction is the
    # source's, so a pair follows the source's label where the model is right on the source.
    # Each trial's windows are one window repeated, so that is decided once per trial.
    rng = np.random.default_rng(0)
    classes, reps, per_trial = 4, 6, 10
    y = np.repeat(np.tile(np.arange(classes), reps), per_trial)
    rep = np.repeat(np.repeat(np.arange(1, reps + 1), classes), per_trial)
    X = rng.normal(0, 1, (classes * reps, 6, 8))[np.repeat(np.arange(classes * reps), per_trial)]
    meta = {"trial_unit": "repetition"}
    data = SubjectData.from_windows({"emg": 2, "acc": 4}, (X.astype(np.float32), y),
                                    classes=[0, 1, 2, 3], meta=meta)  # fmt: skip
    data.rep_test = rep
    base, source = interchange_pairs(data, [(a, b) for a in range(4) for b in range(4) if a != b])
    by_trial = interchange(model, base, source, layer=2, group="cls")
    by_pair = interchange(model, base[:2], source[:2], layer=2, group="cls")
    print(by_trial.summary(), by_pair.summary())
    assert (by_trial.unit, by_trial.trials, by_trial.n) == ("trial", 24, 720)
    assert (by_pair.unit, by_pair.trials) == ("pair", 720)
    assert by_trial.iia == by_pair.iia and 0.05 < by_trial.iia < 0.95
    assert [by_pair.ci_low, by_pair.ci_high] == pytest.approx(
        list(map(float, clopper_pearson(by_pair.k, 720)))
    )
    trial_width = by_trial.ci_high - by_trial.ci_low
    assert trial_width >= 3 * (by_pair.ci_high - by_pair.ci_low)
    assert by_trial.ci_low <= by_trial.iia <= by_trial.ci_high


def _drawn_intervals(fig) -> set[tuple[float, float]]:
    """Every error bar the figure draws, as (low, high) rounded to 6 places."""
    bars = set()
    for container in fig.axes[0].containers:
        for collection in container.lines[2]:
            for segment in collection.get_segments():
                bars.add(tuple(round(float(v), 6) for v in sorted(segment[:, 1])))
    return bars


def test_several_subjects_get_their_own_intervals_and_a_subject_level_one_never_a_pool():
    """Issue 56 item 7: the figure pooled every subject's pairs into one Clopper-Pearson
    interval (0.448-0.486 on the demo's 8 models, where each subject's own was 0.15 wide).
    Two subjects: each subject's own interval over its trials, and the mean of their IIA with
    a t interval over subjects, drawn; the pooled interval nowhere."""
    import pandas as pd

    from emg_lens.inspect import plot_interchange
    from emg_lens.inspect.interchange import over_subjects
    from emg_lens.inspect.probe_report import ProbeReport
    from emg_lens.stats.compare import t_interval

    table = pd.DataFrame({
        "subject": [1, 2, 1, 2], "cut": "none", "layer": [0, 0, 1, 1], "group": "acc",
        "k": [30, 44, 60, 52], "n": 64, "ci_low": [0.30, 0.52, 0.85, 0.70],
        "ci_high": [0.62, 0.82, 0.99, 0.92], "unit": "trial", "trials": 16,
    })  # fmt: skip
    fig = plot_interchange(table)
    drawn = _drawn_intervals(fig)
    for row in table.itertuples():
        assert (round(row.ci_low, 6), round(row.ci_high, 6)) in drawn
    for _, rows in table.groupby("layer"):
        mean = tuple(round(v, 6) for v in t_interval((rows["k"] / rows["n"]).to_numpy(), 0.95))
        pooled = tuple(round(float(v), 6) for v in clopper_pearson(rows["k"].sum(), 128))
        assert mean in drawn and pooled not in drawn
    title = fig.axes[0].get_title()
    assert "2 subjects" in title and "t interval over subjects" in title
    assert "resampling its trials" in title
    summary = over_subjects(table).set_index("layer")
    assert summary.loc[0, "iia"] == pytest.approx((30 / 64 + 44 / 64) / 2)
    assert summary.loc[0, "subjects"] == 2 and summary.loc[0, ["k", "n"]].tolist() == [74, 128]
    probes = pd.DataFrame({"subject": 1, "cut": "none", "layer": [0], "group": "acc",
                           "accuracy": 0.5, "control_accuracy": 0.5, "selectivity": 0.0,
                           "chance": 0.5, "folds": 2, "fold_unit": "trial"})  # fmt: skip
    printed = ProbeReport(probes, table, {"interchange": "acc"}).summary()
    assert "interchange acc at layer 0, cut none: IIA 0.578, the mean of 2 subjects'" in printed
    # one subject: its own interval, as before
    one = plot_interchange(table[table["subject"] == 1])
    assert (0.3, 0.62) in _drawn_intervals(one) and "2 subjects" not in one.axes[0].get_title()
