"""Training studies (the paper's Table 1 and Figure 2): spec validation, channel selection, a
tiny end-to-end run whose statistics match scipy by hand, resuming, and the CLI."""

from __future__ import annotations

import copy
import dataclasses
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from emg_lens.cli import main
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import ArgumentError, DataFormatError, SpecError, StudyError
from emg_lens.studies import (
    StudySpec,
    TrainingInput,
    TrainingStudySpec,
    check_models,
    load_spec,
    run_study,
    run_training_study,
    select_channels,
)
from emg_lens.studies.training import runner as training_module
from tests.tiny import two_class_subjects

STUDIES = Path(__file__).resolve().parents[4] / "studies"

BASE = {
    "kind": "training",
    "name": "t",
    "data": {"subjects": [1, 2, 3]},
    "architectures": ["IsoNet", "MultimodalMLP"],
    "inputs": [
        {"name": "emg_acc", "modalities": ["emg", "acc"]},
        {"name": "emg6_acc6", "channels": {"emg": 6, "acc": 6}, "trials": 2},
    ],
    "reference": "emg_acc",
}


def _with(**changes) -> dict:
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[key] = value
    return data


def _inputs(*entries) -> dict:
    return _with(inputs=[BASE["inputs"][0], *entries])


# Each case: the spec dict, and substrings its SpecError must hold (the key at fault and what
# would be accepted).
BAD_SPECS = {
    "unknown architecture": (
        _with(architectures=["IsoNet", "Transformer"]),
        ["architectures[1]", "'Transformer'", "'HierarchicalTransformer'", "'MultimodalMLP'"],
    ),
    "repeated architecture": (_with(architectures=["IsoNet", "IsoNet"]), ["architectures"]),
    "unknown modality": (
        _inputs({"name": "eeg", "modalities": ["eeg"]}),
        ["inputs[1] (eeg)", "'eeg'", "['emg', 'acc']"],
    ),
    "unknown modality in channels": (
        _inputs({"name": "x", "channels": {"force": 2}}),
        ["inputs[1] (x)", "'force'", "['emg', 'acc']"],
    ),
    "more emg channels than exist": (
        _inputs({"name": "x", "channels": {"emg": 13}}),
        ["inputs[1] (x).channels.emg", "12 emg electrodes", "1..12", "got 13"],
    ),
    "more acc electrodes than exist": (
        _inputs({"name": "x", "channels": {"acc": 13}}),
        ["channels.acc", "12 acc electrodes", "3 axes", "1..12", "got 13"],
    ),
    "reference not among the inputs": (
        _with(reference="emg"),
        ["reference = 'emg'", "['emg_acc', 'emg6_acc6']"],
    ),
    "trials < 1": (
        _inputs({"name": "x", "channels": {"emg": 6}, "trials": 0}),
        ["inputs[1] (x).trials", "positive int", "0"],
    ),
    "trials with whole modalities": (
        _inputs({"name": "x", "modalities": ["emg"], "trials": 3}),
        ["inputs[1] (x)", "trials", "channels"],
    ),
    "both modalities and channels": (
        _inputs({"name": "x", "modalities": ["emg"], "channels": {"emg": 2}}),
        ["inputs[1] (x)", "exactly one of modalities, channels"],
    ),
    "repeated input name": (
        _inputs({"name": "emg_acc", "modalities": ["emg"]}),
        ["inputs names", "'emg_acc'"],
    ),
    "unknown top-level key": (_with(architecture=["IsoNet"]), ["'architecture'", "[study]"]),
    "unknown data key": (_with(data__subject=[1]), ["'subject'", "[data]", "'subjects'"]),
    "no subjects": (_with(data={}), ["data.subjects", '"all"']),
    "subject 0": (
        _with(data__subjects=[0, 1]),
        ["data.subjects (", "must be", "positive", "[0, 1]"],
    ),
    "unknown dataset": (_with(data__dataset="db9"), ["data.dataset = 'db9'", "'hdsemg'"]),
    "real dataset without root": (_with(data__dataset="ninapro-db2"), ["data.root", "folder"]),
    "bad segment": (_with(data__segment=[1.0]), ["data.segment", "steady", "[start_s, stop_s]"]),
    "segment bound a bool": (_with(data__segment=[True, 1.0]), ["data.segment must", "got True"]),
    "segment bound text": (_with(data__segment=[0.5, "1"]), ["[start_s, stop_s]", "got '1'"]),
    "bad synthetic field": (_with(data__synthetic={"n_gesture": 3}), ["[data.synthetic]"]),
    "unknown train key": (_with(train={"epoch": 2}), ["'epoch'", "[train]", "'epochs'"]),
    "unknown preset": (_with(train={"preset": "huge"}), ["train.preset must", "'huge'", "'tiny'"]),
    "bad learning rate": (_with(train={"lr": -1.0}), ["[train]", "lr"]),
    "derived model field": (_with(model={"n_classes": 3}), ["'n_classes'", "[model]"]),
    "model override that breaks an architecture": (
        _with(architectures=["MultimodalMLP"], model={"act_fn": "tanh"}),
        ["MultimodalMLP", "act_fn"],
    ),
    "stats family": (_with(stats={"family": "all"}), ["stats.family", "test, correction"]),
    "stats claims_test": (
        _with(stats={"claims_test": "paired"}),
        ["stats.claims_test", "declare no claims", "test, correction"],
    ),
    "bad correction": (_with(stats={"correction": "sidak"}), ["stats.correction", "'holm'"]),
    "bad metric": (_with(metric="auc"), ["metric = 'auc'", "'macro_f1'"]),
    "input name not an identifier": (
        _inputs({"name": "a b", "modalities": ["emg"]}),
        ["inputs[1].name must be an identifier", "'a b'"],
    ),
    "no modality": (
        _inputs({"name": "x", "modalities": []}),
        ["inputs[1] (x).modalities must be a non-empty list"],
    ),
    "no channel table": (
        _inputs({"name": "x", "channels": {}}),
        ["inputs[1] (x).channels must be a table of electrodes per modality"],
    ),
    "unknown exercise": (
        _with(data__exercises=["Z"]),
        ["data.exercises = ['Z']", "['B', 'C', 'D']"],
    ),
    "unknown segment name": (
        _with(data__segment="middle"),
        ["[data]: PreprocessSpec.segment must be one of", "got 'middle'"],
    ),
    "n_subjects beside listed subjects": (
        _with(data__synthetic={"n_subjects": 3}),
        ["data.synthetic.n_subjects is set by data.subjects"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_specs_raise_spec_errors_naming_the_key(case):
    data, fragments = BAD_SPECS[case]
    with pytest.raises(SpecError) as info:
        TrainingStudySpec.from_dict(data)
    for fragment in fragments:
        assert fragment in str(info.value), (case, str(info.value))


def test_inputs_the_subject_cannot_give_are_named():
    with pytest.raises(ArgumentError, match=r"inputs\[0\]: from_dict needs electrodes="):
        TrainingInput.from_dict({"name": "x", "modalities": ["emg"]})
    mix = TrainingInput("mix", channels=(("emg", 2), ("acc", 1)))
    with pytest.raises(SpecError, match=r"input 'mix' asks for 2 emg electrodes; subject 1 has 1"):
        mix.draw({"emg": 1, "acc": 12}, subject=1, trial=0, seed=0)
    with pytest.raises(SpecError, match=r"input 'mix': subject 1 has no \['acc'\] data"):
        mix.draw({"emg": 12}, subject=1, trial=0, seed=0)


def test_a_model_that_cannot_be_built_is_refused_before_training():
    spec = TrainingStudySpec.from_dict(_with(architectures=["MultimodalTransformer"]))
    broken = TrainingStudySpec.from_dict({**spec.to_dict(), "model": {"n_stem_layers": 1}})
    assert check_models(broken)  # builds
    bad = {**spec.to_dict(), "model": {"n_layers": 2}}  # MultimodalTransformer has no fusion
    with pytest.raises(SpecError, match=r"MultimodalTransformer .*emg_acc.*n_layers"):
        check_models(TrainingStudySpec.from_dict(bad))


def test_round_trip_through_dicts_and_files(tmp_path):
    spec = TrainingStudySpec.from_dict(
        _with(
            data__segment=[0.5, 1.5],
            data__synthetic={"movement_seconds": 1.5},
            train={"epochs": 3, "preset": "tiny", "lr": 1e-3},
            model={"n_layers": 1},
            stats={"test": "wilcoxon", "correction": "holm"},
            description="d",
        )
    )
    assert TrainingStudySpec.from_dict(spec.to_dict()) == spec
    assert load_spec(spec.to_dict()) == spec  # kind = "training" dispatches
    assert load_spec(spec) is spec
    path = tmp_path / "s.toml"
    path.write_text(
        textwrap.dedent(
            """
            kind = "training"
            name = "t"
            architectures = ["IsoNet", "MultimodalMLP"]
            reference = "emg_acc"
            description = "d"
            [data]
            subjects = [1, 2, 3]
            segment = [0.5, 1.5]
            [data.synthetic]
            movement_seconds = 1.5
            [train]
            epochs = 3
            preset = "tiny"
            lr = 1e-3
            [model]
            n_layers = 1
            [[inputs]]
            name = "emg_acc"
            modalities = ["emg", "acc"]
            [[inputs]]
            name = "emg6_acc6"
            channels = {emg = 6, acc = 6}
            trials = 2
            [stats]
            test = "wilcoxon"
            correction = "holm"
            """
        )
    )
    assert load_spec(path) == spec


@pytest.mark.unchecked
def test_ablation_specs_still_load_with_or_without_kind():
    ablation = {
        "name": "a",
        "models": "demo",
        "interventions": [{"name": "c", "edges": "unimodal"}],
    }
    assert isinstance(load_spec(ablation), StudySpec)
    assert load_spec({**ablation, "kind": "ablation"}) == load_spec(ablation)
    with pytest.raises(SpecError, match=r"kind = 'sweep'.*'ablation', 'training'"):
        load_spec({**ablation, "kind": "sweep"})
    with pytest.raises(SpecError, match="not kind = 'training'"):
        run_training_study(StudySpec.from_dict(ablation))


@pytest.mark.unchecked
@pytest.mark.parametrize("given", ["dict", "spec", "file"])
def test_run_study_points_a_training_study_to_run_training_study(given, tmp_path):
    spec = {"dict": BASE, "spec": TrainingStudySpec.from_dict(BASE), "file": tmp_path / "t.yaml"}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(BASE))
    message = "study 't' is kind = 'training', not kind = 'ablation': use run_training_study"
    with pytest.raises(SpecError, match=re.escape(message)):
        run_study(spec[given], models={}, progress=False)


def test_overrides_replace_data_and_train_keys():
    spec = TrainingStudySpec.from_dict(BASE)
    small = spec.with_overrides({"epochs": 1, "subjects": [2], "preset": "tiny", "root": None})
    assert (small.train.epochs, small.data.subjects, small.preset) == (1, (2,), "tiny")
    assert small.fingerprint() != spec.fingerprint()
    # Which subjects run is not part of the fingerprint: a stored study can grow.
    assert spec.with_overrides({"subjects": [7]}).fingerprint() == spec.fingerprint()
    with pytest.raises(SpecError, match=r"unknown override\(s\) \['epoch'\]"):
        spec.with_overrides({"epoch": 1})


@pytest.mark.parametrize("name", ["table1_architectures.toml", "figure2_channel_split.toml"])
def test_study_files_load_and_every_model_builds(name):
    spec = load_spec(STUDIES / name)
    assert isinstance(spec, TrainingStudySpec) and spec.data.dataset == "synthetic"
    rows = check_models(spec)
    assert len(rows) == len(spec.architectures) * len(spec.inputs)


def test_table1_file_has_the_papers_grid():
    spec = load_spec(STUDIES / "table1_architectures.toml")
    assert set(spec.architectures) == {
        "MultimodalMLP",
        "MultimodalTransformer",
        "HierarchicalTransformer",
        "IsoNet",
    }
    assert {i.name: i.modalities for i in spec.inputs} == {
        "emg_acc": ("emg", "acc"),
        "acc": ("acc",),
        "emg": ("emg",),
    }
    assert spec.reference == "emg_acc" and spec.stats.correction == "bonferroni"


def test_figure2_file_is_an_equal_channel_split():
    spec = load_spec(STUDIES / "figure2_channel_split.toml")
    inputs = {i.name: i for i in spec.inputs}
    assert dict(inputs["emg6_acc6"].channels) == {"emg": 6, "acc": 6}
    assert inputs["emg6_acc6"].trials == 5
    assert dict(inputs["emg12"].channels) == {"emg": 12}
    assert dict(inputs["acc12"].channels) == {"acc": 12}


# ----------------------------------------------------------------------------- channels


def _labelled_data(acc_magnitude: bool = False) -> SubjectData:
    """Windows whose channel c holds the value c everywhere: selection is readable."""
    n_acc = 4 if acc_magnitude else 12
    n_channels = 3 + n_acc
    X = np.broadcast_to(np.arange(n_channels, dtype=np.float32)[None, :, None], (2, n_channels, 5))
    y = np.array([0, 1])
    return SubjectData.from_windows(
        {"emg": 3, "acc": n_acc},
        test=(X.copy() + 100, y),
        train=(X.copy(), y),
        subject=1,
        classes=[1, 2],
        meta={"preprocess": {"acc_magnitude": acc_magnitude}},
    )


def test_select_channels_takes_each_acc_electrodes_three_axes():
    data = _labelled_data()
    picked = select_channels(data, {"acc": [2, 0], "emg": [1]})
    assert picked.modalities == {"emg": 1, "acc": 6}  # montage order: emg first
    # emg electrode 1 is channel 1; acc electrode e is channels 3 + 3e .. 3 + 3e + 2.
    assert picked.X_train[0, :, 0].tolist() == [1, 9, 10, 11, 3, 4, 5]
    assert picked.X_test[0, :, 0].tolist() == [101, 109, 110, 111, 103, 104, 105]
    assert picked.meta["electrodes"] == {"acc": [2, 0], "emg": [1]}
    assert data.modalities == {"emg": 3, "acc": 12}  # the input is untouched
    # data naming its channels (DB2's, the demo's): the chosen channels keep their names
    named = dataclasses.replace(
        data, meta={**data.meta, "channel_names": [*"abc", *"defghijklmno"]}
    )
    picked = select_channels(named, {"acc": [2, 0], "emg": [1]})
    assert picked.meta["channel_names"] == ["b", "j", "k", "l", "d", "e", "f"]


def test_select_channels_with_acc_magnitudes_takes_one_channel_per_sensor():
    picked = select_channels(_labelled_data(acc_magnitude=True), {"acc": [3]})
    assert picked.modalities == {"acc": 1}
    assert picked.X_train[0, :, 0].tolist() == [6]


@pytest.mark.parametrize(
    "electrodes, message",
    [
        ({"acc": [4]}, r"acc electrodes \[4\] do not exist.*0..3"),
        ({"eeg": [0]}, r"\['eeg'\] are not in the data.*\['emg', 'acc'\]"),
        ({"emg": [1, 1]}, "distinct"),
        ({"emg": []}, "non-empty"),
    ],
)
def test_select_channels_refuses_bad_choices(electrodes, message):
    with pytest.raises(ArgumentError, match=message):
        select_channels(_labelled_data(), electrodes)


def test_acc_channels_must_come_in_whole_electrodes():
    data = _labelled_data()
    data.modalities = {"emg": 4, "acc": 11}
    with pytest.raises(DataFormatError, match="acc has 11 channels, not a multiple of the 3 axes"):
        select_channels(data, {"emg": [0]})


def test_random_draws_are_seeded_per_subject_and_trial():
    inp = TrainingInput("mix", channels=(("emg", 6), ("acc", 6)), trials=5)
    available = {"emg": 12, "acc": 12}
    draws = {(s, t): inp.draw(available, s, t, seed=0) for s in (1, 2) for t in range(5)}
    for draw in draws.values():
        assert [len(draw["emg"]), len(draw["acc"])] == [6, 6]
        assert all(v == sorted(set(v)) and min(v) >= 0 and max(v) < 12 for v in draw.values())
    assert draws[1, 0] == inp.draw(available, 1, 0, seed=0)  # reproducible
    assert len({str(d) for d in draws.values()}) == len(draws)  # every subject x trial differs
    assert inp.draw(available, 1, 0, seed=1) != draws[1, 0]
    whole = TrainingInput("emg", modalities=("emg",))
    assert whole.draw(available, 1, 0, seed=0) == {"emg": list(range(12))}


# ----------------------------------------------------------------------------- end to end

TINY = {
    "kind": "training",
    "name": "tiny",
    "data": {
        "subjects": [1, 2, 3],
        "segment": "transient",
        "window": 200,
        "step": 200,
        "synthetic": {
            "movement_seconds": 0.5,
            "n_emg_gestures": 2,
            "n_acc_gestures": 2,
            "n_interaction_gestures": 2,
        },
    },
    "train": {"preset": "tiny", "epochs": 1, "lr": 3e-3, "batch_size": 32},
    "architectures": ["IsoNet", "MultimodalMLP"],
    "inputs": [
        {"name": "emg_acc", "modalities": ["emg", "acc"]},
        {"name": "emg", "modalities": ["emg"]},
        {"name": "emg2_acc2", "channels": {"emg": 2, "acc": 2}, "trials": 2},
    ],
    "reference": "emg_acc",
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMG_LENS_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
def test_tiny_study_end_to_end_matches_scipy_by_hand(tmp_path, cache):
    result = run_training_study(TINY, out_dir=tmp_path / "out", progress=False)
    ps, summary = result.per_subject, result.summary
    archs, inputs = TINY["architectures"], [i["name"] for i in TINY["inputs"]]
    assert len(ps) == 3 * 2 * (1 + 1 + 2)
    assert list(zip(summary["architecture"], summary["input"])) == [
        (a, i) for a in archs for i in inputs
    ]
    assert ps["value"].between(0, 1).all()
    # beside each cell, the per-channel feature baseline on its electrodes: the same for
    # every architecture given the same electrodes
    assert ps["baseline"].between(0, 1).all()
    assert (ps.groupby(["subject", "electrodes"])["baseline"].nunique() == 1).all()
    assert ps.groupby("subject")["key"].apply(lambda k: k.is_unique).all()
    mix = ps[ps["input"] == "emg2_acc2"]
    assert mix["electrodes"].str.match(r"^emg:\d+,\d+ acc:\d+,\d+$").all()
    means = ps.groupby(["architecture", "input", "subject"])["value"].mean()
    for arch in archs:
        ref = means[arch, "emg_acc"].to_numpy()
        p_by_hand = {
            name: sps.mannwhitneyu(means[arch, name].to_numpy(), ref, alternative="two-sided")
            for name in inputs[1:]
        }
        rows = summary[summary["architecture"] == arch].set_index("input")
        assert np.isnan(rows.loc["emg_acc", "p"]) and rows.loc["emg_acc", "stars"] == ""
        for name, test in p_by_hand.items():
            assert rows.loc[name, "U"] == pytest.approx(test.statistic)
            assert rows.loc[name, "p"] == pytest.approx(test.pvalue)
            assert rows.loc[name, "p_corr"] == pytest.approx(min(1.0, 2 * test.pvalue))
            assert rows.loc[name, "mean"] == pytest.approx(means[arch, name].mean())
            assert rows.loc[name, "std"] == pytest.approx(means[arch, name].std(ddof=1))
            expected = 100 * (means[arch, name].mean() - ref.mean()) / ref.mean()
            assert rows.loc[name, "delta_pct"] == pytest.approx(expected)
    wide = result.table1()
    assert list(wide.index) == archs
    assert list(wide.columns) == ["emg_acc (ref)", "emg", "emg2_acc2"]
    emg = summary.iloc[1]
    assert wide.loc["IsoNet", "emg"] == f"{emg['mean']:.3f} ± {emg['std']:.3f} {emg.stars}"
    for name in [
        "per_subject.csv",
        "summary.csv",
        "summary.md",
        "comparison.png",
        "comparison.svg",
    ]:
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "emg_acc (ref)" in (tmp_path / "out" / "summary.md").read_text()
    # every trained model beside chance, over its trials (issue 46): chance.csv, the console
    chance = pd.read_csv(tmp_path / "out" / "chance.csv")
    assert len(chance) == len(ps) and (chance["unit"] == "trial").all()
    assert (chance["trials"] < chance["n"]).all() and chance["train_accuracy"].between(0, 1).all()
    assert "beside chance" in result.console() and "beside chance" in result.to_markdown()

    # Resume: every cell is stored, so a second run trains nothing and gives the same tables.
    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training_module, "fit", refuse)
        again = run_training_study(TINY, out_dir=tmp_path / "out", progress=False)
    pd.testing.assert_frame_equal(again.per_subject, ps)
    pd.testing.assert_frame_equal(again.summary, summary)

    # A lost cell is trained again, and only that one, to the same value (seeded training).
    cell = tmp_path / "out" / "cells" / "s2" / f"{ps.loc[ps['subject'] == 2, 'key'].iloc[0]}.json"
    cell.unlink()
    calls = []
    real_fit = training_module.fit
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training_module, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
        third = run_training_study(TINY, out_dir=tmp_path / "out", progress=False)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(third.summary, summary)

    # Other training settings in the same folder are refused rather than mixed.
    with pytest.raises(SpecError, match="different study"):
        run_training_study(TINY, out_dir=tmp_path / "out", progress=False, overrides={"epochs": 2})


def test_given_data_without_a_subject_and_ranks_without_a_store_are_refused(monkeypatch):
    with pytest.raises(SpecError, match=r"data\.subjects \[2, 3\] are not in the given data"):
        run_training_study(BASE, data={1: _labelled_data()}, progress=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(StudyError, match=r"under torchrun \(WORLD_SIZE=2\) without an out_dir"):
        run_training_study(BASE, progress=False)


def test_run_study_on_given_data_equals_loading_it(cache):
    """``data=`` (notebooks) and the spec's own [data] give the same result."""
    from emg_lens.data.datasets import load_subject

    spec = TrainingStudySpec.from_dict(
        {**TINY, "architectures": ["MultimodalMLP"], "inputs": TINY["inputs"][:1]}
    ).with_overrides({"subjects": [2]})
    given = {2: load_subject(spec.data.source(), 2)}
    a = run_training_study(spec, progress=False)
    b = run_training_study(spec, progress=False, data=given)
    pd.testing.assert_frame_equal(
        a.per_subject.drop(columns="train_seconds"), b.per_subject.drop(columns="train_seconds")
    )


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_runs_the_table1_file_on_synthetic_data(tmp_path, cache, capsys):
    spec = STUDIES / "table1_architectures.toml"
    out = tmp_path / "t1"
    argv = ["study", "run", str(spec), "--out", str(out), "--quiet"]
    small = ["--epochs", "1", "--preset", "tiny", "--subjects", "1", "2"]
    assert main([*argv, *small]) == 0
    printed = capsys.readouterr().out
    assert "mannwhitneyu vs 'emg_acc', bonferroni" in printed
    for word in ["emg_acc (ref)", "MultimodalMLP", "HierarchicalTransformer", "p_corr", "U"]:
        assert word in printed
    assert len(pd.read_csv(out / "summary.csv")) == 4 * 3
    assert (out / "comparison.png").is_file()


def test_cli_check_shows_the_training_grid_and_flags_are_for_training_studies(capsys):
    assert main(["study", "check", str(STUDIES / "figure2_channel_split.toml")]) == 0
    printed = capsys.readouterr().out
    assert (
        "emg6_acc6" in printed and "emg 6 + acc 18" in printed and "models per subject" in printed
    )
    ablation = str(STUDIES / "isonet_table3.toml")
    assert main(["study", "run", ablation, "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--epochs: isonet-table3 is an ablation study" in err
    assert "overrides are for training studies" in err


def test_a_diverged_training_study_stores_no_cell_and_writes_no_table(tmp_path):
    """Issue 23 item 2: a training study with lr = 1e30 reported accuracy 0.083 with
    Mann-Whitney statistics; it now stops, naming the subject, the cell and the epoch."""
    from emg_lens.errors import StudyError
    from emg_lens.studies.store import CellStore

    data = two_class_subjects((2,), 24)
    spec = TrainingStudySpec.from_dict(
        {
            "kind": "training",
            "name": "diverges",
            "data": {"subjects": [2], "window": 8},
            "architectures": ["MultimodalMLP"],
            "inputs": [{"name": "both", "modalities": ["emg", "acc"]}],
            "reference": "both",
            "train": {"preset": "tiny", "epochs": 2, "lr": 1e30},
        }
    )
    with pytest.raises(StudyError, match=r"subject 2 MultimodalMLP-both.*epoch"):
        run_training_study(spec, data=data, out_dir=tmp_path, progress=False)
    assert not CellStore(tmp_path, spec.fingerprint()).has(2, spec.cells()[0].key)
    assert not list(tmp_path.glob("summary*")) and not list(tmp_path.glob("*.csv"))


def test_a_stored_training_cell_is_reused_only_for_the_same_data_and_says_so(tmp_path):
    """A training cell records its data, code, torch and threads: rerun on the same data it is
    reused, and said; on changed data it is trained again (it was reused whatever changed)."""
    import emg_lens.studies.training.runner as training_module

    spec = {
        "kind": "training",
        "name": "reuse",
        "data": {"subjects": [2], "window": 8},
        "architectures": ["MultimodalMLP"],
        "inputs": [{"name": "both", "modalities": ["emg", "acc"]}],
        "reference": "both",
        "train": {"preset": "tiny", "epochs": 1},
    }
    data = two_class_subjects((2,), 24)
    first = run_training_study(spec, data=data, out_dir=tmp_path, progress=False)
    assert (first.reused, first.recomputed) == (0, 1)
    calls = []
    real_fit = training_module.fit
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training_module, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
        again = run_training_study(spec, data=data, out_dir=tmp_path, progress=False)
        assert not calls and (again.reused, again.recomputed) == (1, 0)
        assert "cells: 1 reused, 0 recomputed" in again.console()
        changed = two_class_subjects((2,), 24)
        changed[2].X_test = changed[2].X_test + 1.0  # other data, same spec
        third = run_training_study(spec, data=changed, out_dir=tmp_path, progress=False)
    assert len(calls) == 1 and (third.reused, third.recomputed) == (0, 1)
