"""Study kinds behind one interface: every kind is read from one table, a study file is read
once whatever its kind, each kind runs, checks and saves through the same calls, and an option
a kind does not take is refused by name, never ignored."""

from __future__ import annotations

import dataclasses

import pytest

from emg_lens.errors import ArgumentError, SpecError
from emg_lens.output import StudyOutput
from emg_lens.studies import (
    KINDS,
    Intervention,
    StudySpec,
    TrainingInput,
    check_study,
    load_spec,
    run,
)
from emg_lens.studies.kinds import kind_of, study_kind
from emg_lens.studies.spec_base import Spec

ABLATION = {"name": "a", "models": "demo", "interventions": [{"name": "u", "edges": "unimodal"}]}
TRAINING = {
    "kind": "training",
    "name": "t",
    "data": {"subjects": [1, 2]},
    "architectures": ["MultimodalMLP"],
    "reference": "e",
    "inputs": [{"name": "e", "modalities": ["emg"]}],
    "train": {"preset": "tiny", "epochs": 1},
}
DISCOVERY = {"kind": "discovery", "name": "d", "models": "/nowhere", "tau": 0.1}
REGRESSION = {
    "kind": "regression",
    "name": "r",
    "recording": "/nowhere.mat",
    "train": {"epochs": 3},
    "interventions": [{"name": "pairs", "edges": "cross_channel | from_cls"}],
}


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_has_a_spec_runner_check_and_result(name):
    kind = study_kind(name)
    assert kind.name == name and issubclass(kind.spec, Spec) and name == kind.spec.KIND
    assert callable(kind.run) and callable(kind.check)
    assert kind.run.__name__.startswith("run_")
    returned = kind.run.__annotations__.get("return", "")
    result = returned.split(" | ")[0] if isinstance(returned, str) else returned.__name__
    module = __import__(kind.run.__module__, fromlist=[result])
    assert issubclass(getattr(module, result), StudyOutput)


@pytest.mark.parametrize(
    "table", [ABLATION, TRAINING, DISCOVERY, REGRESSION], ids=lambda t: t["name"]
)
def test_a_study_file_of_any_kind_is_read_once_into_its_spec(table, tmp_path, monkeypatch):
    import yaml

    from emg_lens.studies import kinds

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(table))
    reads = []
    real = kinds.read_study_file
    monkeypatch.setattr(
        "emg_lens.studies.kinds.read_study_file",
        lambda p, build: reads.append(p) or real(p, build),
    )
    spec = load_spec(path)
    assert reads == [path] and kind_of(spec).name == table.get("kind", "ablation")
    assert load_spec(spec.to_dict()) == spec  # the table written back reads the same spec
    assert spec.fingerprint() == load_spec(spec.to_dict()).fingerprint()


def test_an_option_a_kind_does_not_take_is_refused_by_name():
    with pytest.raises(ArgumentError, match="models=: t is a training study, which trains"):
        run(TRAINING, models="runs/x")
    with pytest.raises(ArgumentError, match="--wait-timeout: d is a discovery study, whose"):
        run(DISCOVERY, wait_timeout=5.0, flags={"wait_timeout": "--wait-timeout"})
    with pytest.raises(ArgumentError, match="overrides=: a is an ablation study"):
        check_study(ABLATION, overrides={"epochs": 1})
    with pytest.raises(SpecError, match=r"kind = 'sweep'; accepted: \['ablation', 'training'"):
        load_spec({**ABLATION, "kind": "sweep"})


@pytest.mark.unchecked  # a value the annotation refuses, refused by emg_lens's own check
def test_a_value_that_is_no_study_is_refused_by_name():
    with pytest.raises(ArgumentError, match=r"int is no study spec; accepted: \['ablation', "):
        load_spec(5)


def test_each_kind_checks_its_study_before_anything_runs():
    assert "1 interventions" in check_study(ABLATION, layers=2, heads=2)
    assert "candidates: 36 (layer 0: 18, layer 1: 18)" in check_study(DISCOVERY, layers=2, heads=2)
    text = check_study(TRAINING)
    assert "training study on synthetic subjects [1, 2]" in text and "MultimodalMLP" in text


def test_a_spec_says_its_own_checks_and_shares_the_rest():
    spec = load_spec(DISCOVERY)
    assert spec.with_changes(tau=0.2).tau == 0.2 and spec.tau == 0.1
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['taux'\]"):
        spec.with_changes(taux=0.2)
    changed = dataclasses.replace(spec, modules="m.py:f")
    assert changed.fingerprint() == spec.fingerprint()  # how it loads, not what it is


@pytest.mark.parametrize(
    "name", ["../../victim", "/tmp/victim", ".", "..", ".hidden", "~victim", "a\\b", "x" * 300]
)
@pytest.mark.parametrize(
    "table", [ABLATION, TRAINING, DISCOVERY, REGRESSION], ids=lambda t: t["name"]
)
def test_a_study_name_is_one_folder_name_for_check_and_run(table, name, tmp_path, monkeypatch):
    # The name was the output folder's path: name = "../../victim", "/tmp/victim" or "."
    # wrote summary.md, report.html and the tables anywhere (over the user's own), rc 0, and
    # 300 characters was a raw OSError.
    import json

    from emg_lens import cli

    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    (work / "study.yaml").write_text(json.dumps({**table, "name": name}))  # JSON is YAML
    for command in ("check", "run"):
        with pytest.raises(SpecError, match=r"study key 'name' = .* is no folder name") as info:
            cli.run(["study", command, "study.yaml"])
        assert repr(name) in str(info.value) and "without '/'" in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "study.yaml", "work"]
    with pytest.raises(SpecError, match=r"study key 'name' = .* is no folder name"):
        dataclasses.replace(load_spec(table), name=name)  # a notebook's: the same door


@pytest.mark.parametrize(
    ("table", "change", "message"),
    [
        (ABLATION, {"return_type": "not an output"}, r"return_type = 'not an output'; accepted"),
        (TRAINING, {"reference": "nope"}, r"reference = 'nope' is not among the inputs"),
        (
            TRAINING,
            {"inputs": (TrainingInput("e", modalities=("eeg",)),)},  # read with the electrodes
            r"inputs\[0\] \(e\).modalities must be one of \['emg', 'acc'\], got 'eeg'",
        ),
        (DISCOVERY, {"tau": -1.0}, r"tau must be a number in \(0, 1\)"),
        (REGRESSION, {"cuts": {"x": "cross_chanel"}}, r"interventions\[0\].edges: invalid edge"),
    ],
)
def test_a_spec_built_directly_passes_its_files_checks(table, change, message):
    spec = study_kind(table.get("kind", "ablation")).spec.from_dict(table)
    with pytest.raises(SpecError, match=message):
        dataclasses.replace(spec, **change)  # a notebook's way past the file


def test_a_spec_built_directly_holds_what_its_file_would():
    built = StudySpec("a", "demo", (Intervention("u", edges="unimodal"),), metrics=("margin",))
    read = StudySpec.from_dict({**ABLATION, "metric": "margin"})
    assert built == read and built.fingerprint() == read.fingerprint()
    assert dataclasses.replace(read, return_type="avg_logits").to_dict()["return_type"] == (
        "avg_logits"
    )


def test_a_field_set_past_the_type_checks_is_named_where_it_is_written():
    spec = StudySpec.from_dict(ABLATION)
    object.__setattr__(spec, "heads", 5)  # a notebook's, with the runtime type checks off
    with pytest.raises(SpecError, match=r"StudySpec.heads = 5 is no value a study file holds"):
        spec.to_dict()  # what reading it back starts from
