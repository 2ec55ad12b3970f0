"""Linear probes on token groups: what a layer's channel tokens carry, layer by layer
(`probe_tokens`), each beside a *control task* (Hewitt & Liang, 2019: every trial's label
replaced by another trial's; relabelling classes would be no control at all), in folds that
keep each trial's windows together (`fold_windows`). How to read them, and why trials:
docs/guide/what-an-edge-carries.md, first section.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float

from emg_lens._blas import one_blas_thread
from emg_lens._hints import checked
from emg_lens.data.pooled import window_labels
from emg_lens.data.preprocess import SubjectData
from emg_lens.data.trials import trial_unit
from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import (
    ArgumentError,
    IndexOutOfRangeError,
    InputShapeError,
    check_choice,
    check_int,
    check_ints,
    check_type,
)
from emg_lens.hooks.erasure import group_positions
from emg_lens.inputs import as_subject_data, check_deterministic, check_model

HOOKS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
"""The per-block hook points a probe reads (``blocks.{layer}.hook_<name>``)."""
INPUT = "input"
"""The probe's hook and group of the whole input (``hook_input``: every channel's samples side
by side, before the embedding), in the row of layer -1."""
POOLED = "pooled"
"""The group name of the mean over every channel token (what IsoNet's mean-pooled head reads)."""
TOL, MAX_ITER = 1e-3, 200  # LogisticRegression's stopping rule (its own defaults: 1e-4, 100)
COLUMNS = [
    *("layer", "group", "accuracy", "control_accuracy", "selectivity", "chance", "n"),
    *("trials", "folds", "fold_unit"),
]


def token_group(model: Any, group: str | EdgeSet) -> tuple[str, list[int], bool]:
    """``(name, positions, pooled)`` of a probe's token group: a layout group (``"emg"``,
    ``"cls"``), `POOLED` (every channel token, averaged), or an edge set or expression, whose
    tokens are the queries of its edges (the positions those edges write into).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> token_group(model, "acc"), token_group(model, "to_cls")[1]
    (('acc', [3, 4, 5, 6], False), [0])
    """
    if group == POOLED:
        layout = model.layout
        positions = [p for p, g in enumerate(layout.group) if g in layout.modalities]
        return POOLED, positions, True
    check_type(group, str | EdgeSet, "a probe's group")  # a name's check names the groups
    return (*group_positions(model, group, also=[POOLED]), False)


def cut_masks(model: Any, cut: str | EdgeSet | None) -> dict[int, torch.Tensor] | None:
    """``{layer: mask}`` cutting the edge set ``cut`` in every layer (``None``: no cut), for a
    forward's ``edge_masks``.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> masks = cut_masks(IsoNet(EncoderConfig.preset("tiny")), "cross_modal")
    >>> sorted(masks), tuple(masks[0].shape)
    ([0, 1], (4, 7, 7))
    """
    if cut is None:
        return None
    edges = parse(check_type(cut, str | EdgeSet, "cut"))
    stacked = edges.compile_layers(
        model.layout, model.cfg.n_heads, model.cfg.n_layers, device=model.cfg.device
    )
    return dict(enumerate(stacked))


def _hook_names(model: Any, hook: str, layers: Iterable[int] | None) -> dict[int, str]:
    if check_choice(hook, (*HOOKS, INPUT), "hook") == INPUT:  # before every layer: no layers
        return {-1: "hook_input"}
    n = model.cfg.n_layers
    # resid_pre of layer n is the stream after the last block (its resid_post): "after n blocks"
    top = n if hook == "resid_pre" else n - 1
    note = " (layer n is the stream after the last block)" if hook == "resid_pre" else ""
    what = f"layers for hook {hook!r} on this {n}-layer model{note}"
    layers = (
        list(range(top + 1))
        if layers is None
        else check_ints(layers, what, 0, top, IndexOutOfRangeError)
    )
    names = {}
    for layer in dict.fromkeys(layers):
        if hook == "resid_pre" and layer == n:
            names[layer] = f"blocks.{n - 1}.hook_resid_post"
        else:
            names[layer] = f"blocks.{layer}.hook_{hook}"
    return names


@torch.inference_mode()
def token_activations(
    model: Any,
    X: Any,
    names: Sequence[str],
    *,
    cut: str | EdgeSet | None = None,
    batch_size: int = 256,
) -> dict[str, Float[torch.Tensor, "window ..."]]:
    """The activations ``names`` of every window of ``X``, cached in one pass per batch (only
    those hook points are hooked), with the edge set ``cut`` masked in every layer.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> acts = token_activations(model, model.example_input(3), ["blocks.1.hook_resid_pre"])
    >>> tuple(acts["blocks.1.hook_resid_pre"].shape)
    (3, 7, 16)
    """
    X = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    X = X.to(dtype=model.cfg.dtype, device=model.cfg.device)
    masks = cut_masks(model, cut)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for start in range(0, len(X), batch_size):
        _, cache = model.run_with_cache(
            X[start : start + batch_size], names_filter=list(names), return_type=None,
            edge_masks=masks,
        )  # fmt: skip
        for name in names:  # float32 at least (half is upcast), float64 kept
            value = cache[name]
            parts[name].append((value if value.dtype == torch.float64 else value.float()).cpu())
    acts = {name: torch.cat(chunks) for name, chunks in parts.items()}
    if bad := [name for name, value in acts.items() if not torch.isfinite(value).all()]:
        raise InputShapeError(
            f"{bad} holds non-finite values: check the model's weights and the windows"
        )
    return acts


def _labels(
    subject: SubjectData, labels: Any, classes: Iterable[int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(window indices kept, their targets, their trials, their repetitions)."""
    y = np.asarray(subject.y_test)
    if labels is None:
        target = y
    else:
        target = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if target.shape != y.shape:
            raise InputShapeError(
                f"labels must give one value per window ({len(y)}), got {target.shape}"
            )
    keep = np.arange(len(y))
    if classes is not None:
        what = "classes (class indices: y values)"
        classes = check_ints(classes, what, 0, subject.n_classes - 1)
        keep = keep[np.isin(y, classes)]
    # A trial is one repetition of one gesture (emg_lens.data.trials); (X, y) data know none.
    trials = np.asarray(subject.test_trials)
    return keep, target[keep], trials[keep], np.asarray(subject.rep_test)[keep]


def _is_regression(target: np.ndarray) -> bool:
    return bool(np.issubdtype(target.dtype, np.floating))


def _control(target: np.ndarray, trials: np.ndarray, seed: int) -> np.ndarray:
    """Each trial's target replaced by another trial's, by a seeded permutation of trials."""
    ids, first, inverse = np.unique(trials, return_index=True, return_inverse=True)
    per_trial = target[first]
    shuffled = per_trial[np.random.default_rng(seed).permutation(len(ids))]
    return shuffled[inverse]


@dataclass(frozen=True)
class Folds:
    """How `fold_windows` split the windows: ``splits`` (``(train, test)`` index arrays),
    ``unit`` (what a fold keeps together: ``"trial"``, ``"repetition"`` or ``"window"``) and
    ``trials`` (how many trials the windows hold)."""

    splits: list[tuple[np.ndarray, np.ndarray]]
    unit: str
    trials: int

    @property
    def n(self) -> int:
        return len(self.splits)


def fold_windows(
    target: np.ndarray,
    trials: np.ndarray,
    repetitions: np.ndarray,
    folds: int,
    *,
    seed: int = 0,
    unit: str = "repetition",
    what: str = "class",
) -> Folds:
    """Cross-validation folds of windows that keep each trial's windows together: where every
    label has at least ``folds`` trials, ``folds`` stratified group folds of the trials
    (seeded; `GroupKFold` for a float ``target``), unit ``"trial"``; else, where every label
    occurs in two repetitions or more, one repetition left out per fold (unit
    ``"repetition"``); else an `ArgumentError` naming the label (``what``), its trial count and
    ``folds``. ``unit`` is the data's trial unit (`emg_lens.data.trials.trial_unit`).

    >>> y = np.repeat([0, 1, 0, 1], 3)  # 2 classes x 2 repetitions, 3 windows a trial
    >>> rep = np.repeat([1, 1, 2, 2], 3)
    >>> trial = np.repeat([0, 1, 2, 3], 3)
    >>> found = fold_windows(y, trial, rep, folds=5)  # 2 trials a class: by repetition
    >>> found.unit, found.n, [rep[test].tolist() for _, test in found.splits]
    ('repetition', 2, [[1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2]])
    >>> fold_windows(y, trial, rep, folds=2).unit
    'trial'
    """
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut, StratifiedGroupKFold

    folds = check_int(folds, "folds", minimum=2)
    target, trials, repetitions = map(np.asarray, (target, trials, repetitions))
    shapes = target.shape, trials.shape, repetitions.shape
    if target.ndim != 1 or not len(target) or len(set(shapes)) > 1:
        raise InputShapeError(
            f"target, trials, repetitions must be 1-D, one value per window, got {shapes}"
        )
    n_trials = len(np.unique(trials))
    regression = _is_regression(target)
    if regression:
        values, counts = np.array(["windows"]), np.array([n_trials])
    else:
        pairs = np.unique(np.stack([target, trials], 1), axis=0)  # (label, trial) held
        values, counts = np.unique(pairs[:, 0], return_counts=True)
    window_unit = unit == "window"
    if counts.min() >= folds:
        if regression:
            splitter = GroupKFold(folds, shuffle=True, random_state=seed)
        else:
            splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(target, target, groups=trials))
        return Folds(splits, "window" if window_unit else "trial", n_trials)
    reps = np.unique(repetitions)
    # leave one repetition out: every label must also be in a repetition left in
    in_reps = (
        {v: len(np.unique(repetitions[target == v])) for v in values} if not regression else {}
    )
    if not window_unit and len(reps) >= 2 and all(r >= 2 for r in in_reps.values()):
        splits = list(LeaveOneGroupOut().split(target, target, groups=repetitions))
        return Folds(splits, "repetition", n_trials)
    worst = int(counts.argmin())
    name = "the windows" if regression else f"{what} {values[worst].item()!r}"
    why = "; leaving one repetition out needs each label in two repetitions or more"
    why = " (each window is its own trial)" if window_unit else why
    fix = "pass fewer folds" + ("" if regression else " or leave it out (classes=)")
    raise ArgumentError(
        f"{name} has {counts[worst]} trial(s), fewer than folds={folds}{why}: {fix}"
    )


def leave_one_out(
    values: np.ndarray, target: np.ndarray, trials: np.ndarray, name: str = "subject"
) -> Folds:
    """Folds that hold out the windows of each value of ``values`` (one per window: each
    window's subject) in turn, fitting on the others': whether what a probe learns transfers
    to a subject it has not seen (``unit`` is ``name``). Needs two values or more, and each
    fold's training windows must hold two labels or more.

    >>> subject, y = np.repeat([1, 2, 3], 4), np.tile([0, 1], 6)
    >>> found = leave_one_out(subject, y, np.arange(12))
    >>> found.unit, found.n, [subject[test][0].item() for _, test in found.splits]
    ('subject', 3, [1, 2, 3])
    """
    from sklearn.model_selection import LeaveOneGroupOut

    values, target = np.asarray(values), np.asarray(target)
    if values.shape != target.shape:
        raise InputShapeError(
            f"leave-one-{name}-out: {len(target)} windows need a {name} each, got {values.shape}"
        )
    if len(np.unique(values)) < 2:
        raise ArgumentError(
            f"leave-one-{name}-out needs two {name}s or more, got {np.unique(values)}"
        )
    splits = list(LeaveOneGroupOut().split(target, target, groups=values))
    if alone := [test[0] for train, test in splits if len(np.unique(target[train])) < 2]:
        raise ArgumentError(
            f"without {name} {values[alone[0]]!r} the windows hold one label only: no probe to fit"
        )
    return Folds(splits, name, len(np.unique(trials)))


def _check_target(target: np.ndarray, folds: int, regression: bool) -> None:
    if len(target) < check_int(folds, "folds", minimum=2):
        raise ArgumentError(f"fewer windows ({len(target)}) than folds ({folds})")
    if regression and not np.isfinite(target).all():
        raise ArgumentError("labels hold non-finite values; a regression target must be finite")
    if not regression and len(values := np.unique(target)) < 2:
        raise ArgumentError(f"a probe needs at least two classes, got only {values.tolist()}")


def _cross_validate(features: np.ndarray, targets: Sequence[np.ndarray], splits, regression: bool):
    """Mean held-out score (accuracy, or R²) of a probe per target, on the same folds.

    Every fold's probe starts from zero. A probe started from the previous fold's solution
    (``warm_start``) starts from weights fitted on this fold's test trials, and at ``TOL`` it
    stops a few iterations later still holding them: with more features than windows a trial
    (a flattened token group), labels that no token carries were decoded at 0.74 (chance 0.08)
    that way. The fits are small: on one BLAS thread (`emg_lens._blas`)."""
    scores = np.zeros((len(splits), len(targets)))
    with one_blas_thread():
        for i, (train, test) in enumerate(splits):
            scores[i] = _fold_scores(features, targets, train, test, regression)
    return scores.mean(0)


def held_out_accuracy(
    features: np.ndarray, target: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float:
    """The accuracy on the ``test`` windows of the logistic probe fitted on the ``train``
    windows: one fold of `probe_tokens`, for tools that change the features per fold (an
    eraser, `emg_lens.inspect.erasure`).

    >>> x = np.r_[np.zeros((10, 2)), np.ones((10, 2))] + np.linspace(0, 0.1, 20)[:, None]
    >>> y = np.repeat([0, 1], 10)
    >>> held_out_accuracy(x, y, np.r_[0:8, 10:18], np.r_[8:10, 18:20])
    1.0
    """
    with one_blas_thread():
        (score,) = _fold_scores(features, [np.asarray(target)], train, test, False)
    return float(score)


def _fold_scores(
    features: np.ndarray,
    targets: Sequence[np.ndarray],
    train: np.ndarray,
    test: np.ndarray,
    regression: bool,
) -> list[float]:
    """Each target's probe fitted on the ``train`` windows alone and scored on the ``test``
    ones."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import r2_score

    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    fit_x, test_x = (features[train] - mean) / std, (features[test] - mean) / std
    scores = []
    for target in targets:
        if regression:
            pred = Ridge(alpha=1.0).fit(fit_x, target[train]).predict(test_x)
            scores.append(r2_score(target[test], pred))
            continue
        seen = np.unique(target[train])
        if len(seen) == 1:  # a control's folds may hold one label: that is its prediction
            scores.append(float((target[test] == seen[0]).mean()))
            continue
        probe = LogisticRegression(C=1.0, tol=TOL, max_iter=MAX_ITER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the score is what counts
            probe.fit(fit_x, target[train])
        scores.append(float((probe.predict(test_x) == target[test]).mean()))
    return scores


@checked
def probe_tokens(
    model: Any,
    data: SubjectData | tuple[Any, Any],
    *,
    layers: Iterable[int] | None = None,
    groups: Sequence[str | EdgeSet] | None = None,
    classes: Iterable[int] | None = None,
    labels: Any = None,
    hook: str = "resid_pre",
    folds: int = 5,
    seed: int = 0,
    cut: str | EdgeSet | None = None,
    batch_size: int = 256,
    n_jobs: int = 1,
    leave_out: str | None = None,
) -> pd.DataFrame:
    """Cross-validated linear probes on each token group's activations at each layer.

    For every layer and group: a logistic regression on the group's token vectors side by side
    (`POOLED`: their mean over every channel token), scored over folds that keep each trial's
    windows together (`fold_windows`, shuffled with ``seed``), predicting the gesture class
    (of the windows of ``classes`` when given) or ``labels`` (one per window; float values are
    a regression target, ridge scored by R²; a name reads the data's window labels,
    `emg_lens.data.pooled.window_labels`), beside the same probe on the control task.
    ``leave_out`` (a window label, ``"subject"``) holds out one of its values per fold instead.

    ``data`` is a `SubjectData` (its test windows) or ``(X, y)``. ``layers`` are block
    indices (default all; with ``hook="resid_pre"``, ``n_layers`` is the final stream);
    ``hook=INPUT`` probes the whole input (layer -1). ``groups`` default to the layout's and
    `POOLED`. ``cut``: an edge set masked in every layer; ``n_jobs``: joblib's.

    Columns: ``layer, group, accuracy`` (R² for a regression), ``control_accuracy``,
    ``selectivity`` (their difference), ``chance`` (the most frequent label's share; 0 for R²),
    ``n`` (windows), ``trials``, ``folds`` and ``fold_unit`` (what a fold keeps together).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = torch.randn(40, 6, 8, generator=torch.Generator().manual_seed(0))
    >>> y = torch.arange(40) % 2
    >>> X[:, 0] += 2.0 * y[:, None]  # class 1 raises channel 0, an sEMG channel
    >>> table = probe_tokens(model, (X, y), layers=[0], groups=["emg", "acc"])
    >>> table[["layer", "group", "chance", "n"]].values.tolist()
    [[0, 'emg', 0.5, 40], [0, 'acc', 0.5, 40]]
    >>> (table["accuracy"] > 0.8).tolist()  # the sEMG tokens carry it, the ACC tokens do not
    [True, False]
    """
    from sklearn.utils.parallel import Parallel, delayed

    check_model(model)
    check_deterministic(model)
    subject = as_subject_data(model, data)
    if isinstance(labels, str):
        labels = window_labels(subject, labels, "test")
    names = _hook_names(model, hook, layers)
    groups = groups or [*model.layout.groups, POOLED]
    chosen = [(INPUT, [], False)] if hook == INPUT else [token_group(model, g) for g in groups]
    keep, target, trials, reps = _labels(subject, labels, classes)
    regression = _is_regression(target)
    _check_target(target, folds, regression)
    if leave_out is None:
        found = fold_windows(target, trials, reps, folds, seed=seed,
                             unit=trial_unit(subject.meta),
                             what="class" if labels is None else "label")  # fmt: skip
    else:
        left = window_labels(subject, leave_out, "test")[keep]
        found = leave_one_out(left, target, trials, leave_out)
    splits = found.splits
    control = _control(target, trials, seed)
    chance = (
        0.0 if regression else float(np.unique(target, return_counts=True)[1].max() / len(target))
    )
    acts = token_activations(model, subject.X_test[keep], list(names.values()), cut=cut,
                             batch_size=batch_size)  # fmt: skip
    keys, features = [], []
    for layer, name in names.items():
        for group, positions, pooled in chosen:
            keys.append((layer, group))
            tokens = acts[name] if hook == INPUT else acts[name][:, positions]
            features.append((tokens.mean(1) if pooled else tokens.flatten(1)).numpy())
    # Each probe is a few hundred small fits of scipy's L-BFGS: processes, not threads, share
    # them out (joblib runs them in this process when n_jobs is 1).
    scores = Parallel(n_jobs=n_jobs)(
        delayed(_cross_validate)(f, [target, control], splits, regression) for f in features
    )
    rows = [
        {
            "layer": layer,
            "group": group,
            "accuracy": float(accuracy),
            "control_accuracy": float(control_accuracy),
            "selectivity": float(accuracy - control_accuracy),
            "chance": chance,
            "n": len(target),
            "trials": found.trials,
            "folds": found.n,
            "fold_unit": found.unit,
        }
        for (layer, group), (accuracy, control_accuracy) in zip(keys, scores)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)
