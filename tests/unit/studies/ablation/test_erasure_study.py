"""An erasure as a study intervention (issue 58): ``erase = "gesture"`` (or ``"subject"``, a
window label) with ``tokens``, fitted on each subject's training windows and applied to the
held-out ones; every erasure runs its norm-matched random-subspace placebo as the condition
``<name>_placebo``; erasure.csv shows the erasure beside the placebo and side_effects.csv the
classes outside the concept; claims test it paired as they test a cut; a cell's provenance
holds the training windows; a study without erasure keeps its keys and tables."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import SpecError
from emg_lens.studies import run
from emg_lens.studies.ablation.check import check_ablation
from emg_lens.studies.ablation.grid import expand_grid
from emg_lens.studies.ablation.spec import StudySpec
from tests.tiny import adam_steps, tiny_isonet

ERASE = {"name": "erase_acc", "erase": "gesture", "tokens": "acc"}


def _spec(*interventions, **extra) -> dict:
    return {
        "name": "erasure",
        "models": "unused",
        "layers": {"modes": ["individual"], "layers": [0]},
        "interventions": list(interventions),
        **extra,
    }


def _subject(seed: int, subject: int) -> SubjectData:
    """Four classes told apart by ACC channel 0's level (two) and sEMG channel 0's (two):
    train on repetition 1, test on repetition 2."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2, 160, 6, 8)).astype(np.float32)
    y = np.arange(160) % 4
    X[:, :, 3] += 2.0 * (y == 1)[:, None]  # class 1: ACC channel 0
    X[:, :, 0] += 2.0 * (y >= 2)[:, None] * np.where(y == 3, 1, -1)[:, None]  # 2, 3: sEMG
    return SubjectData.from_windows(
        {"emg": 2, "acc": 4}, (X[1], y), (X[0], y), subject=subject, classes=[1, 2, 3, 4]
    )


@pytest.fixture(scope="module")
def subjects():
    """Two tiny models trained on their subject's windows (60 Adam steps)."""
    found = {}
    for s in (1, 2):
        data = _subject(s, s)
        model = tiny_isonet(s, init_range=0.3)
        torch.manual_seed(s)
        adam_steps(model, data, steps=60)
        found[s] = (model, data)
    return found


def _untrained() -> dict:
    """What a study reads without needing a trained model: its tables, its refusals."""
    return {s: (tiny_isonet(s), _subject(s, s)) for s in (1, 2)}


def test_an_erasure_needs_tokens_and_its_keys_belong_to_it():
    with pytest.raises(SpecError, match="needs tokens"):
        StudySpec.from_dict(_spec({"name": "e", "erase": "gesture"}))
    with pytest.raises(SpecError, match=r"\['tokens'\] belong to an erasure"):
        StudySpec.from_dict(_spec({"name": "c", "edges": "cross_modal", "tokens": "acc"}))
    with pytest.raises(SpecError, match="classes restricts erase = 'gesture'"):
        StudySpec.from_dict(_spec({**ERASE, "erase": "subject", "classes": [0, 1]}))
    with pytest.raises(SpecError, match="two or more class indices"):
        StudySpec.from_dict(_spec({**ERASE, "classes": [1]}))
    for seed in (-1, 2**64):  # 2**64 passed, then failed raw after the erasers were fitted
        with pytest.raises(SpecError, match=r"seed \(the placebo's\) must be an int in 0\.\."):
            StudySpec.from_dict(_spec({**ERASE, "seed": seed}))
    with pytest.raises(SpecError, match="exactly one of edges, hook, zero_modality, erase"):
        StudySpec.from_dict(_spec({**ERASE, "edges": "cross_modal"}))
    with pytest.raises(SpecError, match="placebo is named '<name>_placebo'"):
        StudySpec.from_dict(_spec(ERASE, {"name": "erase_acc_placebo", "edges": "cross_modal"}))
    spec = StudySpec.from_dict(_spec({**ERASE, "classes": [0, 1], "seed": 3}))
    assert StudySpec.from_dict(spec.to_dict()) == spec


def test_each_layer_set_has_the_erasure_on_all_heads_then_its_placebo():
    spec = StudySpec.from_dict(
        _spec({"name": "cut", "edges": "cross_modal"}, ERASE, heads=[[0], [1]],
              layers={"modes": ["individual", "all"]})
    )  # fmt: skip
    rows = [c.row() for c in expand_grid(spec, 2, 4)]
    erasures = [(r["intervention"], r["mode"], r["layers"], r["heads"]) for r in rows[6:]]
    assert erasures == [
        ("erase_acc", "individual", "0", "all"), ("erase_acc_placebo", "individual", "0", "all"),
        ("erase_acc", "individual", "1", "all"), ("erase_acc_placebo", "individual", "1", "all"),
        ("erase_acc", "all", "0,1", "all"), ("erase_acc_placebo", "all", "0,1", "all"),
    ]  # fmt: skip
    assert len({r["key"] for r in rows}) == len(rows)


def test_the_keys_of_conditions_without_erasure_are_what_they_were():
    # the key's formula before erasures existed: no new field enters a cut's effect
    spec = StudySpec.from_dict(_spec({"name": "cut", "edges": "cross_modal"}))
    (condition,) = expand_grid(spec, 2, 4)
    effect = json.dumps([{"edges": "cross_modal"}, [0], None], sort_keys=True)
    text = json.dumps(["cut", "individual", 0, effect])
    assert condition.key == hashlib.sha1(text.encode()).hexdigest()[:12]


@pytest.mark.slow  # trains two tiny models (the fixture) and draws the study's figures
def test_the_erasure_runs_beside_its_placebo_claims_test_it_paired_and_it_is_stored(
    subjects, tmp_path
):
    spec = _spec(
        {"name": "cut", "edges": "cross_modal"},
        ERASE,
        {"name": "erase_emg_pair", "erase": "gesture", "tokens": "emg", "classes": [2, 3]},
        class_groups={"emg_pair": [2, 3]},
        claims=[{"intervention": "erase_emg_pair", "layers": "individual 0",
                 "classes": "emg_pair", "expect": "drop"}],
    )  # fmt: skip
    result = run(spec, models=subjects, out_dir=tmp_path, progress=False)
    names = set(result.per_subject["intervention"])
    assert {"erase_acc_placebo", "erase_emg_pair_placebo"} <= names
    table = result.erasures().set_index("intervention")
    acc = table.loc["erase_acc"]  # measured (60 steps, 1 and 2 threads): -0.21, placebo -0.14
    assert acc["erasure_delta"] < -0.1
    assert (acc["n_side_classes"], acc["test"]) == (0, "paired")  # every class is the concept
    # the pair of sEMG classes erased from the sEMG tokens: -0.31, placebo -0.03, and the
    # classes outside the concept barely move (-0.01)
    pair = table.loc["erase_emg_pair"]
    assert pair["erasure_delta"] < -0.15 and pair["erasure_delta"] < pair["placebo_delta"] - 0.15
    assert pair["n_side_classes"] == 2 and -0.1 < pair["side_effect"] <= 0
    assert pair["n_concept_classes"] == 2 and pair["concept_delta"] < pair["erasure_delta"]
    assert (pair["rank"], pair["full_rank"], acc["full_rank"]) == (1, 1, 3)  # stored per cell
    sides = result.side_effects()
    assert set(sides[sides["intervention"] == "erase_emg_pair"]["class"]) == {0, 1}
    claims = result.claims()
    assert claims["intervention"].tolist() == ["erase_emg_pair"] and claims["n"].tolist() == [2]
    written = {p.name for p in tmp_path.iterdir()}
    assert {"erasure.csv", "side_effects.csv"} <= written
    assert "Erasure beside its placebo" in (tmp_path / "summary.md").read_text()
    assert (result.reused, result.recomputed) == (0, 12)
    # an eraser depends on the training windows: new ones recompute the erasures' cells only
    model, data = subjects[1]
    other = SubjectData(**{**vars(data), "X_train": data.X_train[::-1].copy()})
    moved = run(spec, models={**subjects, 1: (model, other)}, out_dir=tmp_path, progress=False)
    assert (moved.reused, moved.recomputed) == (8, 4)  # subject 1's two erasures and placebos


def test_a_study_without_erasure_writes_the_tables_it_wrote():
    result = run(_spec({"name": "cut", "edges": "cross_modal"}), models=_untrained(),
                 progress=False)  # fmt: skip
    assert result.erasures() is None
    assert list(result.tables()) == ["per_subject.csv", "per_class.csv", "summary.csv",
                                     "chance.csv"]  # fmt: skip
    assert "Erasure" not in result.to_markdown() and "erasures" not in result.console()


def test_a_concept_with_one_value_and_unknown_tokens_are_named():
    subjects = _untrained()
    with pytest.raises(SpecError, match="one value of the concept"):
        run(_spec({**ERASE, "erase": "subject"}), models=subjects, progress=False)
    with pytest.raises(SpecError, match="no label 'session'"):
        run(_spec({**ERASE, "erase": "session"}), models=subjects, progress=False)
    with pytest.raises(SpecError, match="unknown token group 'eeg'"):
        check_ablation(StudySpec.from_dict(_spec({**ERASE, "tokens": "eeg"})), preset="tiny")


def test_data_without_training_windows_classes_past_the_data_and_missing_labels_are_named():
    model, full = _untrained()[1]
    test = (full.X_test[:16], full.y_test[:16])
    data = SubjectData.from_windows(
        {"emg": 2, "acc": 4}, test, (full.X_train[:16], full.y_train[:16]), subject=1,
        classes=[1, 2, 3, 4],
    )  # fmt: skip
    with pytest.raises(SpecError, match=r"'erase_acc' \(erase = 'gesture'\): classes \[9\] exceed"):
        run(_spec({**ERASE, "classes": [0, 9]}), models={1: (model, data)}, progress=False)
    test_only = SubjectData.from_windows(
        {"emg": 2, "acc": 4}, test, subject=1, classes=[1, 2, 3, 4]
    )
    with pytest.raises(SpecError, match="subject 1's data hold no training windows"):
        run(_spec(ERASE), models={1: (model, test_only)}, progress=False)
    session = np.arange(16) % 2.0
    session[3] = np.nan  # a window whose label was not recorded
    data.meta["window_labels"] = {"session": {"train": session, "test": np.arange(16) % 2}}
    with pytest.raises(SpecError, match=r"\(erase = 'session'\): concept labels\[3\] = nan"):
        run(_spec({**ERASE, "erase": "session"}), models={1: (model, data)}, progress=False)


def test_erasure_csv_separates_the_concepts_own_change_from_the_side_effects():
    # the erased pair (classes 2, 3) keeps its accuracy, the other classes drop: the whole
    # model's change is all side effect, which concept_delta must not hide
    spec = StudySpec.from_dict(_spec({**ERASE, "classes": [2, 3]}))
    counts = {"baseline": [8, 8, 8, 8], "erase_acc": [4, 6, 8, 8],
              "erase_acc_placebo": [8, 8, 8, 8]}  # fmt: skip
    rows = [
        {"subject": s, "intervention": name, "mode": "individual" if name != "baseline" else "-",
         "layer": 0, "layers": "0", "key": f"{name}{s}", "metric": "accuracy",
         "value": sum(correct) / 40, "class_correct": correct, "class_total": [10] * 4,
         **({"rank": 1 + s, "full_rank": 1, "left": 0.01 * s} if "erase" in name else {})}
        for s in (1, 2) for name, correct in counts.items()
    ]  # fmt: skip
    from emg_lens.studies.ablation.erasure import erasure_table

    row = erasure_table(spec, pd.DataFrame(rows)).iloc[0]
    assert row["erasure_delta"] == pytest.approx(-0.15)
    assert (row["n_concept_classes"], row["concept_delta"], row["concept_placebo_delta"]) == (
        2,
        0,
        0,
    )
    assert (row["n_side_classes"], row["side_effect"]) == (2, pytest.approx(-0.4))
    assert (row["rank"], row["full_rank"], row["left"]) == (2, 1, pytest.approx(0.02))
