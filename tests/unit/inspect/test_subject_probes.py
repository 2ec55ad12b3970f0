"""What the tokens know about the subject (issue 58): a subject probe per layer and token group
on every subject's held-out windows pooled, beside the random-init null (TransformerLens's
``reinitialized``) and the control task, folds of whole trials; the gesture probe folded
leave-one-subject-out; ``emg-lens probe --target subject`` on a folder of checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emg_lens import ArgumentError, InputShapeError
from emg_lens.checkpoints import save_checkpoint
from emg_lens.cli import main
from emg_lens.config import config_for_data
from emg_lens.data.datasets import data_source, load_subject
from emg_lens.data.pooled import pool_subjects
from emg_lens.data.preprocess import PreprocessSpec, SubjectData
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.inspect import probe_tokens
from emg_lens.inspect.probe_report import (
    INPUT,
    NULL,
    TRAINED,
    TRANSFER,
    _subject_readings,
    probe_models,
    probe_subjects,
)
from emg_lens.inspect.probes import leave_one_out
from emg_lens.models import IsoNet
from tests.tiny import tiny_isonet


def _subject(number: int) -> SubjectData:
    """Four classes planted in sEMG channel 0; the subject's ACC channel 1 reads its own
    level. Four repetitions of each class: a trial is (class, repetition)."""
    rng = np.random.default_rng(number)
    X = rng.standard_normal((2, 64, 6, 8)).astype(np.float32)
    y = np.tile(np.repeat([0, 1, 2, 3], 4), 4)
    X[:, :, 0] += 1.5 * y[None, :, None]
    X[:, :, 4] += 1.5 * number
    reps = np.repeat([1, 3, 4, 6], 16), np.repeat([2, 5, 7, 8], 16)
    return SubjectData(number, {"emg": 2, "acc": 4}, [0, 1, 2, 3], X[0], y, reps[0], X[1], y,
                       reps[1])  # fmt: skip


@pytest.fixture(scope="module")
def model():
    return tiny_isonet(perturb=True, init_range=0.5)


def test_the_subject_is_found_where_it_was_planted_and_the_null_beside_it(model):
    subjects = {s: (model, _subject(s)) for s in (1, 2, 3)}
    report = probe_subjects(subjects, groups=["emg", "acc"], layers=[0], folds=4)
    probes = report.probes.set_index(["model", "target", "group"])
    assert set(report.probes["subject"]) == {"1,2,3"}  # one model: probed once
    for name in (TRAINED, NULL):  # at layer 0 a token is its channel's, whatever the weights
        assert (probes.loc[(name, "subject", "acc"), "accuracy"] > 0.9).all()
        assert (probes.loc[(name, "subject", "emg"), "accuracy"] < 0.5).all()  # chance 1/3
    assert (report.probes.query("target == 'subject'")["fold_unit"] == "trial").all()
    gesture = probes.loc[(TRAINED, TRANSFER, "emg")]
    assert gesture["fold_unit"] == "subject" and gesture["folds"] == 3
    assert gesture["accuracy"] > 0.8  # the gesture's channel transfers across subjects
    assert report.chance["model"].tolist() == ["model of 1,2,3"]  # its accuracy beside chance
    assert "random init" in report.summary() and "cut none" in report.summary()


@pytest.mark.slow  # 2-3 s on a shared core: five probes (trained, 3 nulls, the input)
def test_the_subject_probe_reads_the_trained_model_against_the_input_and_the_nulls_range(model):
    """Issue 78: the input carries the subject; the report shows the input's probe and the
    random-init null's range over its seeds, and says what those support, not that training
    put the subject there."""
    subjects = {s: (model, _subject(s)) for s in (1, 2, 3)}
    report = probe_subjects(subjects, groups=["acc"], layers=[0], folds=4, transfer=False)
    table = report.summary_table().set_index("model")
    assert table.at[INPUT, "layer"] == -1 and table.at[INPUT, "accuracy"] > 0.85  # the input
    null = report.probes.query("model == @NULL")
    assert null["seed"].tolist() == [0, 1, 2]  # 3 seeds by default, their range in the table
    low, high = table.at[NULL, "accuracy_min"], table.at[NULL, "accuracy_max"]
    assert (low, high) == (null["accuracy"].min(), null["accuracy"].max()) and low < high
    text = report.to_markdown()
    assert f"({low:.3f}-{high:.3f} over 3 seed(s))" in text
    assert f"carries the subject ({table.at[INPUT, 'accuracy']:.3f}); training neither" in text
    assert "training put" not in text and "put the subject" not in text
    with pytest.raises(ArgumentError, match="null_seeds must be a positive int, got 0"):
        probe_subjects(subjects, groups=["acc"], layers=[0], folds=4, null_seeds=0)


@pytest.mark.parametrize(
    ("trained", "said"),
    [
        (0.96, "training neither added nor removed it beyond the random-init range"),
        (1.0, "training kept more of it than every random init; it did not put it there"),
        (0.90, "training left less of it than every random init passes on"),
    ],
)
def test_the_reading_says_what_the_numbers_support(trained, said):
    rows = [(TRAINED, 2, trained, trained, trained), (NULL, 2, 0.966, 0.956, 0.985),
            (INPUT, -1, 0.998, 0.998, 0.998)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["model", "layer", "accuracy", "accuracy_min",
                                        "accuracy_max"]).assign(target="subject", cut="none",
                                                                group="acc")  # fmt: skip
    (line,) = _subject_readings(table, 3)
    assert "random init 0.966 (0.956-0.985 over 3 seed(s))" in line
    assert "the input already carries the subject (0.998); " + said in line


def test_one_model_on_windows_pooled_already_and_distinct_models_probed_each(model):
    pooled = pool_subjects([_subject(1), _subject(2)])
    report = probe_subjects((model, pooled), groups=["acc"], layers=[0], folds=4,
                            transfer=False)  # fmt: skip
    assert report.probes["subject"].unique().tolist() == ["pooled"]
    assert report.probes["target"].unique().tolist() == ["subject"]
    other = tiny_isonet(seed=1)
    found = probe_subjects({1: (model, _subject(1)), 2: (other, _subject(2))}, groups=["acc"],
                           layers=[0], folds=4, transfer=False)  # fmt: skip
    assert sorted(found.probes["subject"].unique()) == ["1", "2"]
    with pytest.raises(ArgumentError, match="two subjects or more"):
        probe_subjects({1: (model, _subject(1))}, groups=["acc"], layers=[0])


def test_leave_one_subject_out_holds_out_each_subject_whole(model):
    pooled = pool_subjects([_subject(1), _subject(2), _subject(3)])
    table = probe_tokens(model, pooled, layers=[0], groups=["emg"], leave_out="subject")
    assert table["fold_unit"].tolist() == ["subject"] and table["folds"].tolist() == [3]
    subjects = np.repeat([1, 2], 4)
    with pytest.raises(ArgumentError, match="one label only"):
        leave_one_out(subjects, np.repeat([0, 1], 4), np.arange(8))
    with pytest.raises(ArgumentError, match="two subjects or more"):
        leave_one_out(np.ones(8), np.tile([0, 1], 4), np.arange(8))


def test_leave_one_out_needs_a_value_per_window():
    with pytest.raises(InputShapeError, match=r"leave-one-subject-out: 8 windows need a subject"):
        leave_one_out(np.repeat([1, 2], 3), np.tile([0, 1], 4), np.arange(8))


@pytest.mark.slow  # 2.5 s on one core: the command draws its figures and report
def test_the_command_probes_a_folder_of_subjects_for_the_subject(tmp_path, capsys):
    synthetic = SyntheticSpec(
        n_subjects=2,
        n_emg_gestures=2,
        n_acc_gestures=2,
        n_interaction_gestures=0,
        n_repetitions=6,
        movement_seconds=0.3,
        rest_seconds=0.1,
        n_emg=2,
        n_acc_sensors=1,
        subject_offset=1.0,
    )
    preprocess = PreprocessSpec(segment="full", window=40, step=40, standardize=False)
    source = data_source("synthetic", synthetic=synthetic, preprocess=preprocess)
    data = load_subject(source, 1, cache_dir=None)
    cfg = config_for_data(IsoNet, "tiny", data.modalities, data.n_classes, 40, seed=0)
    model = IsoNet(cfg)
    for s in (1, 2):  # a pooled model kept once per subject, each with its data
        save_checkpoint(
            model,
            tmp_path / "models" / f"subject_{s}",
            metadata={"subject": s, "data_source": source, "classes": data.classes},
        )
    argv = [
        "probe",
        "--models",
        str(tmp_path / "models"),
        "--out",
        str(tmp_path / "out"),
        "--target",
        "subject",
        "--layers",
        "0",
        "--groups",
        "emg",
        "acc",
        "--folds",
        "3",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    probes = pd.read_csv(tmp_path / "out" / "probes.csv")
    assert set(probes["model"]) == {TRAINED, NULL, INPUT} and set(probes["subject"]) == {"1,2"}
    at = probes[probes["target"] == "subject"].set_index(["model", "group"])["accuracy"]
    assert at[(TRAINED, "acc")] > 0.9 and at[(TRAINED, "emg")] < 0.7
    assert "random init" in capsys.readouterr().out
    assert main([*argv, "--interchange", "acc"]) == 2
    assert "not with --target subject" in capsys.readouterr().err


def test_probe_models_needs_a_subject_and_a_null_it_can_draw():
    with pytest.raises(ArgumentError, match=r"probe_models needs at least one subject's"):
        probe_models({})
    model = tiny_isonet(perturb=True, init_range=0.5)
    model.embed.reset_parameters = None  # a module that does not say how to reset
    subjects = {1: (model, _subject(1)), 2: (model, _subject(2))}
    with pytest.raises(ArgumentError, match=r"the random-init null of subject\(s\) 1,2's model"):
        probe_subjects(subjects, groups=["acc"], layers=[0], folds=4)
