"""`run_study` (docs/DESIGN.md §5): the prefix-tree evaluation gives exactly what a naive loop of
one hooked forward pass per condition gives; masks that do not take effect are errors; the store
resumes; results are written; checkpoints on disk work."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.components.attention import Attention
from emg_lens.data import datasets as datasets_module
from emg_lens.data.datasets import data_source
from emg_lens.data.preprocess import PreprocessSpec, SubjectData
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.edges import parse
from emg_lens.errors import SpecError
from emg_lens.hooks import (
    attn_scores_filter,
    channel_range,
    mask_edges,
    pattern_filter,
    zero_edges,
)
from emg_lens.models import IsoNet
from emg_lens.studies import StudyError, StudyResult, StudySpec, expand_grid, run_study
from emg_lens.studies.ablation import evaluate as evaluate_module
from emg_lens.studies.ablation import runner as runner_module
from emg_lens.studies.ablation.grid import BASELINE
from emg_lens.studies.ablation.summary import legend
from emg_lens.studies.store import CellStore
from emg_lens.train import TrainConfig, accuracy, fit
from tests.tiny import db2_checkpoint, perturb_biases, uni_and_cross

N_TEST = 48

HOOK_FILE = textwrap.dedent(
    """
    from emg_lens.hooks import pattern_filter, zero_edges


    def zero_cross(model, layers):
        # Zero cross-modal attention weights after the softmax (no renormalisation).
        return [(pattern_filter(layers), zero_edges("cross_modal", model.layout))]


    emg_reads_acc = "between(emg, acc)"
    """
)


SUBJECTS = {
    "seeds": (1, 2),
    "config": {"preset": "tiny", "n_layers": 3, "init_range": 0.5},
    "prototype_weight": 0.7,
    "n_train": 96,
    "n_test": N_TEST,
    "train": TrainConfig(epochs=3, batch_size=32, lr=1e-2, progress=False),
}
"""The recipe of the trained subjects, `SharedOnDisk`'s key for them."""


def _make_subject(seed: int) -> tuple[IsoNet, SubjectData]:
    """A tiny 3-layer IsoNet trained for a few steps on class-dependent random windows."""
    # A wide initialisation makes attention sharp, so edge masks change predictions.
    config = dict(SUBJECTS["config"])
    cfg = EncoderConfig.preset(config.pop("preset"), seed=seed, **config)
    rng = np.random.default_rng(seed)
    shape = (cfg.n_channels, cfg.n_samples)
    prototypes = rng.standard_normal((cfg.n_classes, *shape))

    def windows(n):
        y = rng.integers(0, cfg.n_classes, n)
        X = SUBJECTS["prototype_weight"] * prototypes[y] + rng.standard_normal((n, *shape))
        return X.astype(np.float32), y

    train = windows(SUBJECTS["n_train"])
    test = windows(SUBJECTS["n_test"])
    model = IsoNet(cfg)
    perturb_biases(model)
    fit(model, *train, SUBJECTS["train"])
    data = SubjectData.from_windows(
        dict(cfg.modalities), test, train, subject=seed, classes=list(range(cfg.n_classes))
    )
    return model.eval(), data


def _save_subjects(folder: Path) -> None:
    for seed in SUBJECTS["seeds"]:
        model, data = _make_subject(seed)
        save_checkpoint(model, folder / f"subject_{seed}")
        arrays = {k: getattr(data, k) for k in ("X_train", "y_train", "X_test", "y_test")}
        np.savez(folder / f"subject_{seed}.npz", **arrays)


@pytest.fixture(scope="module")
def subjects(shared) -> dict[int, tuple[IsoNet, SubjectData]]:
    """`_make_subject` of each seed, trained by the first test of the run that asks."""
    folder = shared.folder(shared.key("runner_subjects", SUBJECTS), _save_subjects)
    found = {}
    for seed in SUBJECTS["seeds"]:
        model = load_checkpoint(folder / f"subject_{seed}")
        with np.load(folder / f"subject_{seed}.npz") as arrays:
            data = SubjectData.from_windows(
                dict(model.cfg.modalities),
                (arrays["X_test"], arrays["y_test"]),
                (arrays["X_train"], arrays["y_train"]),
                subject=seed,
                classes=list(range(model.cfg.n_classes)),
            )
        found[seed] = (model, data)
    return found


@pytest.fixture
def no_figures(monkeypatch):
    """Skip drawing (seconds of matplotlib) where a test stores results but does not look at
    the figures; `test_save_writes_tables_and_figures` draws them."""
    monkeypatch.setattr(StudyResult, "figures", lambda self: {})


@pytest.fixture
def hook_dir(tmp_path):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "user.py").write_text(HOOK_FILE)
    return tmp_path


def _spec(source_dir=".", **changes) -> StudySpec:
    data = {
        "name": "runner",
        "models": "unused",
        "interventions": uni_and_cross(),
        "layers": {
            "modes": ["individual", "from_first", "from_last", "all", "explicit"],
            "explicit": [[0, 2]],
        },
        "heads": ["all", [1, 3]],
        **changes,
    }
    return StudySpec.from_dict(data, source_dir=source_dir)


# ----------------------------------------------------------------------------- naive reference


def _naive_predictions(spec: StudySpec, model, X: torch.Tensor, condition) -> np.ndarray:
    return _naive_logits(spec, model, X, condition).argmax(-1)


@torch.inference_mode()
def _naive_logits(spec: StudySpec, model, X: torch.Tensor, condition) -> np.ndarray:
    """One full forward pass per condition, the obvious way: the scored output."""
    intervention = condition.intervention
    out = spec.return_type
    if intervention is None:
        logits = model(X, return_type=out)
    elif intervention.zero_modality is not None:
        silenced = X.clone()
        rows = channel_range(model.cfg.modalities, intervention.zero_modality)
        silenced[:, rows.start : rows.stop] = 0.0
        logits = model(silenced, return_type=out)
    else:
        if intervention.edges is not None:
            target = parse(intervention.edges)
        else:
            target = spec.resolve_hook(intervention.hook, allow_code=True)
        if callable(target) and not hasattr(target, "compile"):
            hooks = target(model, list(condition.layers))
        else:
            if condition.heads is not None:
                target = target.on_heads(condition.heads)
            hooks = [(attn_scores_filter(condition.layers), mask_edges(target, model.layout))]
        logits = model.run_with_hooks(X, fwd_hooks=hooks, return_type=out)
    return logits.numpy()


@pytest.fixture
def record_predictions(monkeypatch):
    """Make every stored cell carry its predictions (a spy around the runner's scoring)."""
    real, real_stacked = evaluate_module.score_logits, evaluate_module.score_stacked

    def cell(logits, reference, y, n_classes, trials=None):
        pred = np.asarray(logits).argmax(-1).tolist()
        return {**real(logits, reference, y, n_classes, trials), "pred": pred}

    def cells(logits, reference, y, n_classes, trials=None):
        scored = real_stacked(logits, reference, y, n_classes, trials)
        return [{**c, "pred": p.tolist()} for c, p in zip(scored, np.asarray(logits).argmax(-1))]

    monkeypatch.setattr(evaluate_module, "score_logits", cell)  # hooked conditions
    monkeypatch.setattr(evaluate_module, "score_stacked", cells)  # the prefix tree's


def _check_against_naive(spec, subjects, result, out_dir):
    """Compare every stored cell with the naive loop; returns (cells checked, cells whose
    predictions differ from the subject's baseline)."""
    store = CellStore(out_dir, spec.fingerprint())
    checked = changed = 0
    for subject, (model, data) in subjects.items():
        grid = {c.key: c for c in [BASELINE, *expand_grid(spec, 3, 4)]}
        X = torch.as_tensor(data.X_test)
        rows = result.per_subject[result.per_subject["subject"] == subject]
        base = _naive_predictions(spec, model, X, BASELINE)
        assert sorted(rows["key"]) == sorted(grid)
        for row in rows.itertuples(index=False):
            expected = _naive_predictions(spec, model, X, grid[row.key])
            got = np.asarray(store.get(subject, row.key)["pred"])
            where = f"subject {subject}, {row.intervention} {row.mode} {row.layer} {row.heads}"
            np.testing.assert_array_equal(got, expected, err_msg=where)
            assert row.value == float((expected == data.y_test).mean()), where
            expected_correct = np.bincount(
                data.y_test[expected == data.y_test], minlength=data.n_classes
            )
            assert row.class_correct == expected_correct.tolist(), where
            checked += 1
            changed += bool((expected != base).any())
    return checked, changed


# ----------------------------------------------------------------------------- equal to naive


def test_runner_equals_naive_loop(subjects, tmp_path, record_predictions, monkeypatch, no_figures):
    spec = _spec()
    seen = []
    real_tree = evaluate_module._run_prefix_tree

    def tree(model, X, sequences, *args):
        seen.append(len(sequences))
        return real_tree(model, X, sequences, *args)

    monkeypatch.setattr(evaluate_module, "_run_prefix_tree", tree)
    result = run_study(spec, models=subjects, out_dir=tmp_path, batch_size=20, progress=False)
    grid = expand_grid(spec, 3, 4)
    # 2 interventions x (3 individual + 3 from_first + 3 from_last + all + explicit) x 2 head sets
    assert len(grid) == 2 * 11 * 2
    assert len(result.per_subject) == 2 * (1 + len(grid))
    # Equal effects are evaluated once: per intervention and head set, the distinct layer sets
    # are {0} {1} {2} {0,1} {0,1,2} {1,2} {0,2}: 7; plus the baseline.
    assert seen == [2 * 7 * 2 + 1] * 2
    checked, changed = _check_against_naive(spec, subjects, result, tmp_path)
    assert checked == 2 * (1 + len(grid))
    assert changed > checked // 3  # the masks matter: the comparison is not vacuous


def test_input_ablation_and_user_hooks_equal_naive(
    subjects, hook_dir, record_predictions, no_figures
):
    spec = _spec(
        source_dir=hook_dir,
        interventions=[
            {"name": "acc_off", "zero_modality": "acc"},
            {"name": "emg_off", "zero_modality": "emg"},
            {"name": "zero_cross", "hook": "hooks/user.py:zero_cross"},
            {"name": "emg_reads_acc", "hook": "hooks/user.py:emg_reads_acc"},
        ],
        layers={"modes": ["individual", "from_last"]},
        heads=["all"],
    )
    out = hook_dir / "out"
    result = run_study(spec, models=subjects, out_dir=out, progress=False, allow_code=True)
    modes = result.per_subject.groupby("intervention")["mode"].unique()
    assert list(modes["acc_off"]) == ["input"] and list(modes["emg_off"]) == ["input"]
    checked, changed = _check_against_naive(spec, subjects, result, out)
    assert checked == 2 * (1 + 2 + 2 * 6)
    assert changed > checked // 3
    base = result.baseline
    zeroed = result.per_subject.set_index(["intervention", "subject"])["value"]
    assert (zeroed["acc_off"] != base).any() or (zeroed["emg_off"] != base).any()


def test_hook_factory_with_head_subsets_is_refused(subjects, hook_dir):
    # A factory acts on every head: a head-subset row would silently repeat the all-heads one.
    spec = _spec(
        source_dir=hook_dir,
        interventions=[{"name": "zero_cross", "hook": "hooks/user.py:zero_cross"}],
        heads=["all", [2]],
    )
    with pytest.raises(SpecError, match=r"'zero_cross' is a hook factory.*\[2\]"):
        run_study(spec, models=subjects, progress=False, allow_code=True)


def test_hook_factory_equals_its_naive_evaluation(subjects, hook_dir):
    # Without the prediction spy: the factory's accuracy per layer set, by hand.
    spec = _spec(
        source_dir=hook_dir,
        interventions=[{"name": "zero_cross", "hook": "hooks/user.py:zero_cross"}],
        layers={"modes": ["from_first"]},
        heads=["all"],
    )
    result = run_study(spec, models=subjects, progress=False, allow_code=True)
    for subject, (model, data) in subjects.items():
        X = torch.as_tensor(data.X_test)
        for layer in range(3):
            hooks = [(pattern_filter(range(layer + 1)), zero_edges("cross_modal", model.layout))]
            with torch.inference_mode():
                pred = model.run_with_hooks(X, fwd_hooks=hooks).argmax(-1).numpy()
            row = result.per_subject.query(
                f"subject == {subject} and intervention == 'zero_cross' and layer == {layer}"
            )
            assert row["value"].item() == float((pred == data.y_test).mean())


def _balanced_accuracy(y, pred):
    return np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)])


def _macro_f1(y, pred):
    scores = []
    for c in np.unique(y):  # classes present in the test labels
        tp = np.sum((pred == c) & (y == c))
        precision = tp / max(np.sum(pred == c), 1)
        recall = tp / np.sum(y == c)
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return np.mean(scores)


def test_avg_head_readout_equals_naive(subjects, hook_dir, record_predictions, no_figures):
    """``return_type = "avg_logits"`` scores IsoNet's mean-pooled head, on every path."""
    spec = _spec(
        source_dir=hook_dir,
        return_type="avg_logits",
        interventions=[
            {"name": "cross", "edges": "cross_modal"},
            {"name": "acc_off", "zero_modality": "acc"},
            {"name": "zero_cross", "hook": "hooks/user.py:zero_cross"},
        ],
        layers={"modes": ["individual"]},
        heads=["all"],
    )
    out = hook_dir / "out"
    result = run_study(spec, models=subjects, out_dir=out, progress=False, allow_code=True)
    checked, _ = _check_against_naive(spec, subjects, result, out)
    assert checked == 2 * (1 + 1 + 3 + 3)
    cls = run_study(
        _spec(source_dir=hook_dir, **{**spec.to_dict(), "return_type": "logits"}),
        models=subjects,
        progress=False,
        allow_code=True,
    )
    # the two heads are different readouts: some cell must differ
    assert not np.array_equal(result.per_subject["value"], cls.per_subject["value"])


@pytest.mark.parametrize(
    ("return_type", "match"),
    [("both", "does not give"), ("latent", "return_type = 'latent'"), ("no way", "return_type")],
)
def test_bad_return_type_is_a_spec_error(subjects, return_type, match):
    with pytest.raises(SpecError, match=match):
        run_study(_spec(return_type=return_type), models=subjects, progress=False)


@pytest.mark.parametrize("metric", ["balanced_accuracy", "macro_f1"])
def test_other_metrics(subjects, metric):
    spec = _spec(metric=metric, layers={"modes": ["individual"]}, heads=["all"])
    result = run_study(spec, models=subjects, progress=False)
    score = {"balanced_accuracy": _balanced_accuracy, "macro_f1": _macro_f1}[metric]
    grid = {c.key: c for c in [BASELINE, *expand_grid(spec, 3, 4)]}
    for subject, (model, data) in subjects.items():
        X = torch.as_tensor(data.X_test)
        rows = result.per_subject[result.per_subject["subject"] == subject]
        for row in rows.itertuples():
            pred = _naive_predictions(spec, model, X, grid[row.key])
            assert row.metric == metric
            assert row.value == pytest.approx(score(data.y_test, pred), abs=1e-12)
            assert row.value != pytest.approx(np.mean(pred == data.y_test))  # not accuracy


def _hand_metrics(logits: np.ndarray, reference: np.ndarray, y: np.ndarray) -> dict:
    """The continuous metrics, computed here from the logits in numpy (float64)."""
    from scipy.special import log_softmax

    logits, reference = logits.astype(np.float64), reference.astype(np.float64)
    rows = np.arange(len(y))
    others = logits.copy()
    others[rows, y] = -np.inf
    log_q, log_p = log_softmax(logits, axis=1), log_softmax(reference, axis=1)
    return {
        "margin": np.mean(logits[rows, y] - others.max(1)),
        "logprob": np.mean(log_q[rows, y]),
        "kl": np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)),
        "flip_rate": np.mean(logits.argmax(1) != reference.argmax(1)),
    }


def test_continuous_metrics_equal_a_hand_computation(subjects, hook_dir, no_figures):
    """Every metric of one study from the same passes, each equal to its definition computed
    from the naive loop's logits (edge masks, an input ablation and a hook factory)."""
    metrics = ["accuracy", "margin", "logprob", "kl", "flip_rate"]
    spec = _spec(
        source_dir=hook_dir,
        metric=metrics,
        interventions=[
            {"name": "cross", "edges": "cross_modal"},
            {"name": "acc_off", "zero_modality": "acc"},
            {"name": "zero_cross", "hook": "hooks/user.py:zero_cross"},
        ],
        layers={"modes": ["individual", "all"]},
        heads=["all"],
    )
    passes = []
    real_tree = evaluate_module._run_prefix_tree
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(
        evaluate_module,
        "_run_prefix_tree",
        lambda *args: passes.append(1) or real_tree(*args),
    )
    try:
        result = run_study(spec, models=subjects, progress=False, allow_code=True)
    finally:
        monkeypatch.undo()
    assert passes == [1, 1]  # one prefix tree per subject, whatever the number of metrics
    grid = {c.key: c for c in [BASELINE, *expand_grid(spec, 3, 4)]}
    moved = set()
    for subject, (model, data) in subjects.items():
        X = torch.as_tensor(data.X_test)
        reference = _naive_logits(spec, model, X, BASELINE)
        rows = result.per_subject[result.per_subject["subject"] == subject]
        assert sorted(set(rows["metric"])) == sorted(metrics)
        for row in rows.itertuples():
            logits = _naive_logits(spec, model, X, grid[row.key])
            if row.metric == "accuracy":
                expected = np.mean(logits.argmax(1) == data.y_test)
            else:
                expected = _hand_metrics(logits, reference, data.y_test)[row.metric]
            assert row.value == pytest.approx(expected, abs=1e-5), (row.key, row.metric)
            if row.intervention == "baseline" and row.metric in ("kl", "flip_rate"):
                assert row.value == 0.0  # the reference itself: exactly nothing moved
            moved.add(
                (
                    row.metric,
                    row.value
                    != pytest.approx(
                        rows.loc[
                            (rows["intervention"] == "baseline") & (rows["metric"] == row.metric),
                            "value",
                        ].iloc[0],
                        abs=1e-9,
                    ),
                )
            )
    assert {(m, True) for m in metrics} <= moved  # each metric moves under some cut
    summary = result.summary
    assert list(dict.fromkeys(summary["metric"])) == metrics
    relative = summary["metric"] == "accuracy"
    assert summary.loc[relative, "delta_pct"].notna().all()
    assert summary.loc[~relative, "delta_pct"].isna().all()  # absolute changes only
    np.testing.assert_allclose(summary["delta"], summary["mean"] - summary["baseline"])
    margin = result.of_metric("margin")
    assert set(margin.per_subject["metric"]) == {"margin"} and len(margin.summary) == 4 + 1 + 4


# ----------------------------------------------------------------------------- verification


def test_verification_catches_a_batched_path_that_ignores_masks(subjects, monkeypatch):
    spec = _spec(layers={"modes": ["individual"]}, heads=["all"])
    real_fast = Attention.from_projected  # the fast path's masked half, which the runner runs
    monkeypatch.setattr(
        Attention, "from_projected", lambda self, projected, mask=None: real_fast(self, projected)
    )
    with pytest.raises(StudyError, match="disagree"):
        run_study(spec, models=subjects, progress=False)
    # Without the check the broken run "succeeds": the verification is what catches it.
    result = run_study(spec, models=subjects, verify=False, progress=False)
    assert (result.summary["delta_pct"] == 0).all()


@pytest.mark.slow
def test_a_verifying_run_never_reuses_cells_computed_without_verification(
    subjects, monkeypatch, tmp_path
):
    """Cells stored by a run without verification, from a fast path that ignores masks, are
    not reused by a run that verifies: it recomputes them and catches the broken path."""
    spec = _spec(layers={"modes": ["individual"]}, heads=["all"])
    real_fast = Attention.from_projected
    monkeypatch.setattr(
        Attention, "from_projected", lambda self, projected, mask=None: real_fast(self, projected)
    )
    unverified = run_study(spec, models=subjects, out_dir=tmp_path, verify=False, progress=False)
    assert unverified.recomputed > 0 and (unverified.summary["delta_pct"] == 0).all()
    again = run_study(spec, models=subjects, out_dir=tmp_path, verify=False, progress=False)
    assert again.recomputed == 0  # the same run again: reused
    with pytest.raises(StudyError, match="disagree"):
        run_study(spec, models=subjects, out_dir=tmp_path, progress=False)


def test_verification_catches_a_mask_ignored_on_the_hooked_path(subjects, monkeypatch):
    spec = _spec(layers={"modes": ["individual"]}, heads=["all"])
    monkeypatch.setattr(evaluate_module, "mask_edges", lambda edges, layout: lambda x, hook: x)
    with pytest.raises(StudyError, match=r"not zero.*did not take effect"):
        run_study(spec, models=subjects, progress=False)


def test_verification_catches_a_hooked_path_that_skips_hook_attn_scores(subjects, monkeypatch):
    """The explicit path computes attention without passing the scores through their hook
    point, so a ``mask_edges`` hook there never runs."""
    spec = _spec(layers={"modes": ["individual"]}, heads=["all"])
    real = Attention._forward_explicit

    def explicit(self, x, edge_mask):
        point = self._modules["hook_attn_scores"]
        self._modules["hook_attn_scores"] = torch.nn.Identity()
        try:
            return real(self, x, edge_mask)
        finally:
            self._modules["hook_attn_scores"] = point

    monkeypatch.setattr(Attention, "_forward_explicit", explicit)
    with pytest.raises(StudyError, match="did not take effect"):
        run_study(spec, models=subjects, progress=False)


# ----------------------------------------------------------------------------- store


def test_structural_zeros_are_named_and_left_out_of_the_family(subjects, tmp_path, no_figures):
    """Scored on the CLS head, a last-layer cross-modal cut leaves the CLS row whole: it
    computes the baseline exactly. It is marked, gets no p, and leaves the family: layer mode
    `individual` then holds only the cuts of layers 0 and 1, so Bonferroni multiplies by 2,
    not 3. An edge set with no edge on this layout is refused by name, as `compile_edges`
    refuses it (issue 85: one answer on every path; it was a structural zero here)."""
    nothing = {"name": "nothing", "edges": "between(emg,acc) & between(acc,emg)"}
    spec = _spec(
        interventions=[{"name": "cross", "edges": "cross_modal"}, nothing],
        layers={"modes": ["individual", "all"]},
        heads=["all"],
    )
    with pytest.raises(SpecError, match=r"intervention 'nothing': .* selects no edge in layers"):
        run_study(spec, models=subjects, out_dir=tmp_path / "refused", progress=False)
    spec = _spec(
        interventions=[{"name": "cross", "edges": "cross_modal"}],
        layers={"modes": ["individual", "all"]},
        heads=["all"],
    )
    result = run_study(spec, models=subjects, out_dir=tmp_path, progress=False)
    summary = result.summary
    zero = summary["stars"] == "≡0"
    layers = [None if pd.isna(v) else int(v) for v in summary.loc[zero, "layer"]]
    assert set(zip(summary.loc[zero, "intervention"], layers)) == {("cross", 2)}
    assert summary.loc[zero, "p"].isna().all() and summary.loc[zero, "p_corr"].isna().all()
    assert (summary.loc[zero, "delta_pct"] == 0).all()
    tested = summary[~zero & (summary["mode"] == "individual")]
    assert len(tested) == 2 and np.allclose(tested["p_corr"], np.minimum(1, 2 * tested["p"]))
    markdown = (tmp_path / "summary.md").read_text()
    assert "structural zeros" in markdown and "cross (individual 2)" in markdown
    assert "m = 1–2 comparisons per mode" in markdown  # all: cross; individual: layers 0, 1
    per_subject = pd.read_csv(tmp_path / "per_subject.csv")
    assert per_subject.groupby("key")["structural"].nunique().eq(1).all()  # every subject


def test_store_refuses_another_spec(subjects, tmp_path, no_figures):
    small = _spec(layers={"modes": ["all"]}, heads=["all"])
    run_study(small, models=subjects, out_dir=tmp_path, progress=False)
    other = _spec(layers={"modes": ["all"]}, heads=["all"], metric="macro_f1")
    with pytest.raises(SpecError, match="different study"):
        run_study(other, models=subjects, out_dir=tmp_path, progress=False)
    with pytest.raises(SpecError, match="different study"):
        CellStore(tmp_path, other.fingerprint())


def test_rerun_is_identical_and_evaluates_nothing(subjects, tmp_path, monkeypatch, no_figures):
    spec = _spec(layers={"modes": ["individual", "from_last"]}, heads=["all", [1]])
    first = run_study(spec, models=subjects, out_dir=tmp_path, progress=False)
    first_csv = (tmp_path / "summary.csv").read_text()
    calls = []
    real = runner_module.evaluate_subject

    def evaluate(spec, subject, todo, **kw):
        calls.append([c.key for c in todo])
        return real(spec, subject, todo, **kw)

    monkeypatch.setattr(runner_module, "evaluate_subject", evaluate)
    second = run_study(spec, models=subjects, out_dir=tmp_path, progress=False)
    assert calls == []
    pd.testing.assert_frame_equal(first.per_subject, second.per_subject)
    pd.testing.assert_frame_equal(first.summary, second.summary)
    assert (tmp_path / "summary.csv").read_text() == first_csv

    # A lost cell is recomputed, alone, to the same value.
    lost = first.per_subject.iloc[5]
    (tmp_path / "cells" / f"s{lost.subject}" / f"{lost.key}.json").unlink()
    third = run_study(spec, models=subjects, out_dir=tmp_path, progress=False)
    assert calls == [[lost.key]]
    pd.testing.assert_frame_equal(first.per_subject, third.per_subject)
    for path in (tmp_path / "cells").rglob("*"):
        assert path.is_dir() or (path.suffix == ".json" and json.loads(path.read_text()))


@pytest.mark.slow
def test_save_writes_tables_and_figures(subjects, tmp_path):
    spec = _spec(layers={"modes": ["individual", "from_first"]}, heads=["all"])
    result = run_study(spec, models=subjects, progress=False)
    written = result.save(tmp_path / "out")
    names = {p.name for p in written}
    expected = {
        "per_subject.csv",
        "summary.csv",
        "summary.md",
        "boxplots.png",
        "boxplots.svg",
        "heatmap.png",
        "heatmap.svg",
    }
    assert expected <= names
    for name in expected:
        assert (tmp_path / "out" / name).stat().st_size > 0
    per_subject = pd.read_csv(tmp_path / "out" / "per_subject.csv")
    assert len(per_subject) == len(result.per_subject) == 2 * (1 + 2 * 6)
    assert per_subject["value"].tolist() == result.per_subject["value"].tolist()
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["key"].tolist() == result.summary["key"].tolist()
    # (NaN: the structural zeros, the last layer's cuts on the CLS head)
    assert summary["p_corr"].tolist() == pytest.approx(
        result.summary["p_corr"].tolist(), nan_ok=True
    )
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert markdown.startswith("# runner") and "| intervention |" in markdown
    # no claims: the key to the stars and r_rb is above the first table that has them
    assert markdown.index(legend(markdown=True)) < markdown.index("| intervention |")
    assert (tmp_path / "out" / "boxplots.png").read_bytes()[:4] == b"\x89PNG"
    table3 = result.table3()
    assert list(table3.columns) == ["mode", "layer", "heads", "uni", "cross"]
    assert len(table3) == 6


# ----------------------------------------------------------------------------- checkpoints

SOURCE = data_source(
    "synthetic",
    synthetic=SyntheticSpec(n_subjects=2, movement_seconds=1.0),
    preprocess=PreprocessSpec(segment=(0.25, 1.0), step=100),
)


@pytest.mark.slow
def test_run_study_from_checkpoints(tmp_path, monkeypatch, no_figures):
    models = tmp_path / "models"
    for subject in (1, 2):  # varied predictions without training
        db2_checkpoint(models, subject, SOURCE, perturb=True)
    loaded = {}
    real_load = datasets_module.load_subject

    def load_subject(source, subject):
        assert source == json.loads(json.dumps(SOURCE))
        loaded[subject] = real_load(source, subject)
        return loaded[subject]

    monkeypatch.setattr(datasets_module, "load_subject", load_subject)  # load_checkpoint_data's
    spec = _spec(layers={"modes": ["all"]}, heads=["all"])
    result = run_study(spec, models=models, out_dir=tmp_path / "out", progress=False)
    assert sorted(loaded) == [1, 2]
    assert sorted(result.per_subject["subject"].unique()) == [1, 2]
    for subject, data in loaded.items():
        model = load_checkpoint(models / f"subject_{subject}")
        assert result.baseline[subject] == accuracy(model, data.X_test, data.y_test)
        X = torch.as_tensor(data.X_test)
        cross = _naive_predictions(spec, model, X, expand_grid(spec, 2, 4)[1])
        row = result.per_subject.query(f"subject == {subject} and intervention == 'cross'")
        assert row["value"].item() == float((cross == data.y_test).mean())

    # A finished study reloads nothing: not the data, and (peeking at sizes) not the models.
    loaded.clear()
    again = run_study(spec, models=models, out_dir=tmp_path / "out", progress=False)
    assert loaded == {}
    pd.testing.assert_frame_equal(result.per_subject, again.per_subject)


def test_the_mask_table_keys_masks_of_any_size():
    """Masks of 256 or more tokens (TinyMyo's 800) get ids by content like small ones."""
    from emg_lens.studies.ablation.evaluate import _MaskTable

    table = _MaskTable()
    a = torch.zeros(2, 300, 300, dtype=torch.bool)
    a[0, 0, 1] = True
    b = a.clone()
    b[1, 299, 3] = True
    assert (table.id(a), table.id(a.clone()), table.id(b)) == (0, 0, 1)
    assert table.id(torch.zeros(2, 300, 300, dtype=torch.bool)) is None


def test_an_in_memory_model_is_moved_only_where_it_is_not(monkeypatch):
    from emg_lens.studies.subjects import load_entry

    model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    X, y = np.zeros((2, 1, 4)), np.array([0, 1])
    data = SubjectData.from_windows({"emg": 1}, (X, y), (X, y))
    moves = []
    monkeypatch.setattr(model, "to", lambda *a, **k: moves.append(a) or model)
    assert load_entry((model, data), torch.device("cpu")).model is model and not moves
    model.cfg.device = "meta"  # its cfg says elsewhere: moved, as before
    load_entry((model, data), torch.device("cpu"))
    model.cfg.device = "cpu"
    load_entry((model, data), torch.device("meta"))  # its tensors are elsewhere
    assert moves == [(torch.device("cpu"),), (torch.device("meta"),)]
