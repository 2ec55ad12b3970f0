"""Concept erasure at a token group (issue 58): the LEACE guarantee on the windows an eraser is
fitted on (concept-erasure's own test asserts it: the erased representation's cross-covariance
with the one-hot concept is zero, so no linear classifier beats a constant), the hook edits the
group's tokens only and only where it was fitted, the placebo moves each window as far in a
seeded random subspace of the eraser's rank, erasers in several layers are fitted in order,
and `erase_concept` reports a held-out probe before and after, folded by trial."""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pytest
import torch

from emg_lens import ArgumentError, InputShapeError, LayoutError
from emg_lens.data.pooled import pool_subjects
from emg_lens.data.preprocess import SubjectData
from emg_lens.hooks.erasure import (
    concept_codes,
    fit_erasers,
    fit_token_eraser,
    group_vectors,
)
from emg_lens.inspect import probe_tokens
from emg_lens.inspect.erasure import REPORT_COLUMNS, erase_concept
from tests.tiny import tiny_isonet

AT = "blocks.0.hook_resid_pre"


@pytest.fixture(scope="module")
def model():
    return tiny_isonet(perturb=True, init_range=0.5)


def _planted(n: int = 120, classes: int = 3, seed: int = 0):
    """Windows whose class raises ACC channel 0 (position 3) by a class-dependent level."""
    X = torch.randn(n, 6, 8, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(n) % classes
    X[:, 3] += 1.5 * y[:, None]
    return X, y


def _cached(model, X, name=AT):
    _, cache = model.run_with_cache(X, names_filter=[name])
    return cache[name]


def test_the_erased_group_holds_no_linear_trace_of_the_concept_where_it_was_fitted(model):
    from sklearn.linear_model import LogisticRegression

    X, y = _planted()
    positions = model.layout.positions("acc")
    eraser = fit_token_eraser(_cached(model, X), y, at=AT, positions=positions)
    assert eraser.rank == 2 and eraser.values == (0, 1, 2)  # k - 1 for k classes
    flat = group_vectors(_cached(model, X), positions)
    erased = eraser.erase(flat)
    onehot = torch.nn.functional.one_hot(y).double()
    cross = (erased - erased.mean(0)).T @ (onehot - onehot.mean(0)) / len(y)
    assert cross.abs().max() < 1e-8 < (flat - flat.mean(0)).T.matmul(onehot).abs().max()
    fitted = LogisticRegression(max_iter=1000).fit(erased.numpy(), y.numpy())
    assert fitted.score(erased.numpy(), y.numpy()) < 0.5  # chance 1/3; before: all of them
    assert LogisticRegression(max_iter=1000).fit(flat.numpy(), y).score(flat.numpy(), y) > 0.9


@pytest.mark.unchecked  # positions that the annotation, Sequence[int], refuses
def test_an_eraser_s_positions_are_ints():
    X, y = torch.randn(20, 3, 4), torch.arange(20) % 2
    for bad in ([], [1.0], [True]):  # none, a float, a bool: no token positions
        with pytest.raises(
            ArgumentError, match=rf"positions .* must be .*, got {re.escape(repr(bad))}$"
        ):
            fit_token_eraser(X, y, at="x", positions=bad)
    assert fit_token_eraser(X, y, at="x", positions=[np.int64(1)]).positions == (1,)


def test_an_eraser_that_leaves_part_of_the_concept_says_how_much():
    # concept-erasure drops whitened directions below its svd_tol (0.01): a class of a few
    # windows among thousands is left whole, which the eraser's `left` and a warning say
    g = torch.Generator().manual_seed(7)
    X = torch.randn(5000, 1, 8, generator=g)
    rare = torch.zeros(5000, dtype=torch.long)
    rare[:3] = 1
    X[:3, 0, 0] += 3.0
    with pytest.warns(UserWarning, match=r"leaves 100 % of the concept's cross-covariance"):
        eraser = fit_token_eraser(X, rare, at="x", positions=[0])
    assert eraser.rank == 0 and eraser.left == pytest.approx(1.0)
    y = torch.arange(5000) % 2  # balanced: erased whole, no warning
    X[:, 0, 1] += y
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert fit_token_eraser(X, y, at="x", positions=[0]).left < 1e-12


def test_the_hook_edits_the_group_only_and_only_where_it_was_fitted(model):
    X, y = _planted()
    eraser = fit_token_eraser(_cached(model, X), y, at=AT, positions=[3, 4])
    act = _cached(model, X)
    out = eraser(act)
    untouched = [p for p in range(act.shape[1]) if p not in (3, 4)]
    assert torch.equal(out[:, untouched], act[:, untouched])
    assert not torch.allclose(out[:, [3, 4]], act[:, [3, 4]])
    with model.hooks(fwd_hooks=[(AT, eraser)]):  # what a cache records after the hook
        assert torch.allclose(_cached(model, X), out)
    with pytest.raises(LayoutError, match=r"fitted at 'blocks\.0\.hook_resid_pre'"):
        model.run_with_hooks(X, fwd_hooks=[("blocks.1.hook_resid_pre", eraser)])


def test_the_placebo_moves_each_window_as_far_in_a_random_subspace_of_the_same_rank(model):
    X, y = _planted()
    positions = model.layout.positions("acc")
    eraser = fit_token_eraser(_cached(model, X), y, at=AT, positions=positions)
    flat = group_vectors(_cached(model, X), positions)
    placebo = eraser.placebo(seed=3)
    moved = (placebo.erase(flat) - flat).norm(dim=1)
    assert torch.allclose(moved, (eraser.erase(flat) - flat).norm(dim=1), rtol=1e-6, atol=1e-9)
    assert placebo.basis.shape == (flat.shape[1], eraser.rank)
    assert torch.allclose(placebo.basis.T @ placebo.basis, torch.eye(2, dtype=torch.float64))
    again, other = eraser.placebo(seed=3), eraser.placebo(seed=4)
    assert torch.equal(again.basis, placebo.basis) and not torch.equal(other.basis, placebo.basis)
    # the concept survives the placebo: a probe still reads it
    from sklearn.linear_model import LogisticRegression

    kept = placebo.erase(flat).numpy()
    assert LogisticRegression(max_iter=1000).fit(kept, y).score(kept, y) > 0.8


def test_erasers_in_several_layers_are_fitted_in_order_on_what_the_earlier_leave(model):
    X, y = _planted()
    names = [AT, "blocks.1.hook_resid_pre"]
    first, second = fit_erasers(model, X, y, names=names, positions=[3, 4, 5, 6])
    with model.hooks(fwd_hooks=[(first.at, first)]):
        entering = _cached(model, X, names[1])  # layer 1's input with layer 0 erased
    flat = second.erase(group_vectors(entering, second.positions))
    means = torch.stack([flat[y == c].mean(0) for c in range(3)])
    assert torch.allclose(means, means[:1].expand_as(means), atol=1e-6)


def test_bad_inputs_are_named(model):
    X, y = _planted()
    with pytest.raises(ArgumentError, match="at least two values"):
        fit_token_eraser(_cached(model, X), torch.zeros(len(y)), at=AT, positions=[3])
    with pytest.raises(InputShapeError, match="one per window"):
        fit_token_eraser(_cached(model, X), y[:5], at=AT, positions=[3])
    with pytest.raises(ArgumentError, match="need their concept's labels"):
        erase_concept(model, X, "gesture", at=AT, tokens="acc")
    with pytest.raises(LayoutError, match=r"no hook point 'blocks\.9\.hook_resid_pre'"):
        erase_concept(model, X, y, at="blocks.9.hook_resid_pre", tokens="acc")
    with pytest.raises(LayoutError, match="unknown token group 'eeg'"):
        erase_concept(model, X, y, at=AT, tokens="eeg")
    with pytest.raises(ArgumentError, match="'pooled' is the mean"):
        erase_concept(model, X, y, at=AT, tokens="pooled")


def test_windows_labels_and_hook_points_an_eraser_cannot_use_are_named(model):
    X, y = _planted(n=8)
    with pytest.raises(InputShapeError, match=r"labels, trials must be one value per window"):
        erase_concept(model, X, y[:5], at=AT, tokens="acc")
    with pytest.raises(InputShapeError, match=r"an eraser reads \[window, position, d_model\]"):
        erase_concept(model, X, y, at="blocks.0.attn.hook_pattern", tokens="acc")
    test_only = SubjectData.from_windows(model.cfg.modalities, (X[:8], y[:8]), subject=3)
    with pytest.raises(ArgumentError, match="SubjectData 3 has no training windows to fit on"):
        erase_concept(model, test_only, at=AT, tokens="acc")
    with pytest.raises(ArgumentError, match="trials= is for windows in an array"):
        erase_concept(model, test_only, at=AT, tokens="acc", trials=np.arange(8))


def test_the_report_scores_a_fresh_probe_on_held_out_trials_before_and_after(model):
    X, y = _planted()
    erasure = erase_concept(model, X, y, at=AT, tokens="acc", folds=4)
    row = erasure.report.iloc[0]
    assert list(erasure.report.columns) == REPORT_COLUMNS
    assert (row["concept"], row["group"], row["rank"], row["fold_unit"]) == (
        "labels", "acc", 2, "window",
    )  # fmt: skip
    assert row["accuracy_before"] > 0.85 and row["placebo_accuracy"] > 0.8
    assert abs(row["accuracy_after"] - row["chance"]) <= 0.15
    # the hook it returns: a fresh probe on erased tokens of other windows of the same kind
    other, labels = _planted(seed=1)
    with model.hooks(fwd_hooks=erasure.fwd_hooks):
        table = probe_tokens(model, (other, labels), layers=[0], groups=["acc", "emg"], folds=4)
    erased = table.set_index("group")
    assert erased.loc["acc", "accuracy"] <= 1 / 3 + 0.15


def test_a_subjects_training_windows_and_trials_fit_it_and_a_pooled_subject_is_a_concept(model):
    X, y = _planted(seed=2)
    a = SubjectData.from_windows(model.cfg.modalities, (X[:60], y[:60]), (X[60:], y[60:]),
                                 subject=1)  # fmt: skip
    shifted = X.clone()
    shifted[:, 4] += 2.0  # subject 2's ACC channel 1 reads higher
    b = SubjectData.from_windows(model.cfg.modalities, (shifted[:60], y[:60]),
                                 (shifted[60:], y[60:]), subject=2)  # fmt: skip
    pooled = pool_subjects([a, b])
    erasure = erase_concept(model, pooled, "subject", at=AT, tokens="acc", folds=4)
    row = erasure.report.iloc[0]
    assert (row["concept"], row["rank"], row["n"]) == ("subject", 1, 120)
    assert row["accuracy_before"] > 0.9 and row["accuracy_after"] < 0.7
    with pytest.raises(ArgumentError, match="at least two values"):
        erase_concept(model, a, "subject", at=AT, tokens="acc")
    with pytest.raises(ArgumentError, match="no label 'session'"):
        erase_concept(model, a, "session", at=AT, tokens="acc")


def test_erasure_runs_on_the_models_device_dtype_and_keeps_gradients_possible(model):
    X, y = _planted()
    erasure = erase_concept(model, X, y, at=AT, tokens="acc", folds=4)
    x = X[:4].clone().requires_grad_(True)
    out = model.run_with_hooks(x, fwd_hooks=erasure.fwd_hooks)
    out.sum().backward()  # an eraser fitted without inference tensors
    assert x.grad is not None and np.isfinite(x.grad.numpy()).all()


def test_a_float64_model_is_erased_in_float64(model):
    # the activations are not rounded to float32 before the float64 fit: the class means of
    # the erased fit windows coincide to float64 rounding (float32 left ~1e-9)
    wide = copy.deepcopy(model).to(torch.float64)
    X, y = _planted()
    positions = wide.layout.positions("acc")
    (eraser,) = fit_erasers(wide, X, y, names=[AT], positions=positions)
    with torch.no_grad():
        _, cache = wide.run_with_cache(X.double(), names_filter=[AT], return_type=None)
    erased = eraser.erase(group_vectors(cache[AT], positions))
    means = torch.stack([erased[y == c].mean(0) for c in range(3)])
    assert (means - means[0]).abs().max() < 1e-12


def test_erasure_inputs_are_refused_by_name_before_anything_is_fitted(model, monkeypatch):
    import emg_lens.hooks.erasure as hooks

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before the inputs were checked")

    monkeypatch.setattr(hooks, "_fit", no_fit)
    X, y = _planted(n=24)
    y = y.numpy()
    for bad in (np.where(np.arange(24) == 5, np.nan, y.astype(float)),
                np.array([None, *y[1:]], dtype=object)):  # fmt: skip
        with pytest.raises(InputShapeError, match=r"concept labels\[\d+\] = (nan|None) is missing"):
            fit_erasers(model, X, bad, names=[AT], positions=[3])
    with pytest.raises(ArgumentError, match=r"forward order: 'blocks\.0\.hook_resid_pre' runs"):
        fit_erasers(model, X, y, names=["blocks.1.hook_resid_pre", AT], positions=[3])
    for batch in (0, -5):
        with pytest.raises(ArgumentError, match=rf"batch_size must be a positive int, got {batch}"):
            fit_erasers(model, X, y, names=[AT], positions=[3], batch_size=batch)
    for seed in (-3, 2**70):
        with pytest.raises(ArgumentError, match=rf"seed .* in 0\.\.2147483647, got {seed}"):
            erase_concept(model, X, y, at=AT, tokens="acc", seed=seed)
    with pytest.raises(ArgumentError, match="batch_size must be a positive int, got -5"):
        erase_concept(model, X, y, at=AT, tokens="acc", batch_size=-5)


@pytest.mark.unchecked
def test_numpy_integers_are_integers_and_a_placebo_seed_out_of_range_is_named(model):
    from emg_lens.inspect.probes import fold_windows

    X, y = _planted(n=24)
    (eraser,) = fit_erasers(model, X, y, names=[AT], positions=[3], batch_size=np.int64(8))
    assert eraser.placebo(np.int64(3)).seed == 3
    assert fold_windows(y.numpy(), np.arange(24), np.zeros(24), np.int64(2), seed=1).n == 2
    with pytest.raises(ArgumentError, match=r"placebo's seed must be an int in 0\.\."):
        eraser.placebo(2**64)


def _eraser():
    acts = torch.randn(40, 3, 4, generator=torch.Generator().manual_seed(0))
    return fit_token_eraser(acts, torch.arange(40) % 2, at=AT, positions=[1])


def _nan_acts(model):
    acts = torch.zeros(4, 3, 4)
    acts[0, 1, 0] = float("nan")
    return fit_token_eraser(acts, [0, 1, 0, 1], at=AT, positions=[1])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda m: group_vectors(torch.ones(2, 3), [0]),
            InputShapeError,
            r"\[window, pos, d_model",
        ),
        (lambda m: concept_codes([]), InputShapeError, "labels must be one value per window"),
        (lambda m: concept_codes([[0, 1]]), InputShapeError, "labels must be one value per window"),
        (
            lambda m: concept_codes(np.array([3, "a"], dtype=object)),
            InputShapeError,
            r"labels mix \['int', 'str'\]: a concept is all numbers or all strings",
        ),
        (_nan_acts, InputShapeError, rf"{AT} holds NaN or inf at positions \[1\]"),
        (
            lambda m: _eraser()(torch.ones(2, 3, 5)),
            InputShapeError,
            rf"{AT}: an eraser takes \[window, pos, d_model=4\], got",
        ),
        (
            lambda m: fit_erasers(m, m.example_input(4), [0, 1] * 2, names=["nope"], positions=[1]),
            LayoutError,
            r"names \['nope'\] must be one or more hook points of IsoNet.*unknown: \['nope'\]",
        ),
        (
            lambda m: fit_erasers(m, m.example_input(4), [0, 1] * 2, names=[], positions=[1]),
            LayoutError,
            r"names \[\] must be one or more hook points",
        ),
    ],
    ids=[
        "2d-acts",
        "no-labels",
        "2d-labels",
        "mixed-labels",
        "nan-acts",
        "wrong-d_model",
        "unknown-name",
        "no-names",
    ],
)
def test_what_an_eraser_cannot_fit_or_take_is_refused_by_name(model, call, error, match):
    with pytest.raises(error, match=match):
        call(model)
