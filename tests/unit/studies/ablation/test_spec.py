"""Study specs (docs/DESIGN.md §5): every mistake is a SpecError naming the key and what is
accepted; specs round-trip through dicts, TOML and YAML; hook references resolve next to the
file."""

from __future__ import annotations

import copy
import textwrap

import pytest
import yaml

from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import SpecError, StudyError
from emg_lens.studies import StudySpec, expand_grid, load_spec, run_study
from tests.tiny import tiny_subject

BASE = {
    "name": "t",
    "models": "demo",
    "interventions": [{"name": "cross", "edges": "cross_modal"}],
}


def _with(**changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def _intervention(**fields) -> dict:
    return _with(interventions=[{"name": "x", **fields}])


# Each case: the spec dict, and substrings its SpecError message must hold (the key, and what
# would be accepted or what was given).
BAD_SPECS = {
    "unknown top-level key": (_with(modles="demo"), ["'modles'", "[study]", "'models'"]),
    "unknown key in layers": (
        _with(layers={"mode": ["individual"]}),
        ["'mode'", "[layers]", "'modes'", "'explicit'"],
    ),
    "unknown key in stats": (
        _with(stats={"tests": "wilcoxon"}),
        ["'tests'", "[stats]", "'test'", "'correction'", "'family'"],
    ),
    "unknown key in an intervention": (
        _intervention(edges="cross_modal", edge="x"),
        ["'edge'", "interventions[0]", "'edges'", "'hook'", "'zero_modality'"],
    ),
    "bad metric": (_with(metric="auc"), ["metric", "'auc'", "'accuracy'", "'macro_f1'"]),
    "bad mode": (
        _with(layers={"modes": ["individual", "RFB"]}),
        ["layers.modes", "'RFB'", "'from_first'", "'from_last'"],
    ),
    "no mode": (_with(layers={"modes": []}), ["layers.modes", "'individual'"]),
    "explicit mode without layer lists": (
        _with(layers={"modes": ["explicit"]}),
        ["layers.modes", "'explicit'", "layers.explicit"],
    ),
    "empty explicit layer list": (
        _with(layers={"modes": ["explicit"], "explicit": [[0], []]}),
        ["layers.explicit", "empty"],
    ),
    "explicit layers not integers": (
        _with(layers={"modes": ["explicit"], "explicit": [[0, "1"]]}),
        ["layers.explicit[0]", "list of integers", "'1'"],
    ),
    "layers not integers": (
        _with(layers={"layers": [0, 1.5]}),
        ["layers.layers", "list of integers", "1.5"],
    ),
    "empty interventions": (_with(interventions=[]), ["[[interventions]]", "at least one"]),
    "no interventions": ({"name": "t", "models": "demo"}, ["[[interventions]]"]),
    "missing name": ({"models": "demo", "interventions": []}, ["'name'", "required"]),
    "missing models": ({"name": "t", "interventions": []}, ["'models'", "required"]),
    "duplicate names": (
        _with(
            interventions=[
                {"name": "a", "edges": "unimodal"},
                {"name": "a", "edges": "cross_modal"},
            ]
        ),
        ["unique", "['a', 'a']"],
    ),
    "two of edges/hook/zero_modality": (
        _intervention(edges="cross_modal", zero_modality="acc"),
        ["interventions[0]", "exactly one of edges, hook, zero_modality", "'edges'", "'zero_m"],
    ),
    "none of edges/hook/zero_modality": (
        _intervention(),
        ["interventions[0]", "exactly one of edges, hook, zero_modality", "[]"],
    ),
    "bad edge expression": (
        _intervention(edges="cross_modal & heads(0,"),
        ["interventions[0].edges", "column", "^", "expected"],
    ),
    "unknown selector": (
        _intervention(edges="crossmodal"),
        ["interventions[0].edges", "column 1", "^^^", "cross_modal"],
    ),
    "hook without a name": (
        _intervention(hook="hooks/x.py"),
        ["interventions[0].hook", "'hooks/file.py:name'", "'hooks/x.py'"],
    ),
    "zero_modality not a string": (
        _intervention(zero_modality=3),
        ["interventions[0].zero_modality", "modality name", "3"],
    ),
    "heads not a list": (_with(heads="0,1"), ["heads", "list of head sets", "'0,1'"]),
    "heads mixing indices and sets": (_with(heads=[0, [1]]), ["heads", "mixes", "[0, [1]]"]),
    "heads twice": (
        _with(heads=[[1]], interventions=[{"name": "c", "edges": "cross_modal & heads(0)"}]),
        ["intervention 'c'", "heads(0)", "heads = [[1]]", "one place only"],
    ),
    "heads with a string": (_with(heads=[[0, "1"]]), ["heads[0]", "list of integers", "'1'"]),
    "heads with a bool": (_with(heads=["all", [True]]), ["heads[1]", "list of integers"]),
    "heads a flat bool": (_with(heads=[True]), ["heads[0]", "list of integers", "got True"]),
    "heads a bool among indices": (_with(heads=[0, True]), ["heads", "mixes", "[0, True]"]),
    "heads empty": (_with(heads=[]), ["heads", "list of head sets"]),
    "name baseline": (
        _intervention(name="baseline", edges="cross_modal"),
        ["interventions[0].name", "'baseline'"],
    ),
    "name not an identifier": (
        _with(interventions=[{"name": "cross modal", "edges": "cross_modal"}]),
        ["interventions[0].name", "identifier", "'cross modal'"],
    ),
    "subjects not integers": (_with(subjects=["1"]), ["subjects", "list of integers"]),
    "bad test": (_with(stats={"test": "ttest"}), ["stats.test", "'ttest'", "'mannwhitneyu'"]),
    "bad correction": (
        _with(stats={"correction": "fdr"}),
        ["stats.correction", "'fdr'", "'bonferroni'", "'holm'"],
    ),
    "bad family": (_with(stats={"family": "layer"}), ["stats.family", "'layer'", "'mode'"]),
    "bad metric name": (_with(metric="f1"), ["metric = 'f1'", "'macro_f1'", "'margin'", "a list"]),
    "bad metric in a list": (_with(metric=["accuracy", "auc"]), ["metric = 'auc'", "'kl'"]),
    "empty metric list": (_with(metric=[]), ["metric = []", "'flip_rate'"]),
    "repeated metric": (_with(metric=["kl", "kl"]), ["metric repeats 'kl'"]),
    "class_groups not a table": (_with(class_groups=[1]), ["[class_groups] must be a table"]),
    "erase not a name": (
        _intervention(erase="not a name", tokens="acc"),
        ["interventions[0] (x).erase = 'not a name'", "'gesture', 'subject'"],
    ),
    "another kind": (_with(kind="training"), ["kind = 'training'", "reads kind = 'ablation'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_raises_spec_error_naming_the_key(case):
    data, needles = BAD_SPECS[case]
    with pytest.raises(SpecError) as info:
        StudySpec.from_dict(data)
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{case}: {needle!r} not in {message!r}"


def test_a_spec_that_is_no_table_is_a_spec_error():
    with pytest.raises(SpecError, match=r"a study spec must be a table, got \[1\]"):
        StudySpec.from_dict([1])


def test_modes_not_a_list_is_a_spec_error():
    with pytest.raises(SpecError, match=r"layers\.modes"):
        StudySpec.from_dict(_with(layers={"modes": 5}))


def test_bad_spec_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('name = "t"\nmodels = "demo"\nmetric = "auc"\n')
    with pytest.raises(SpecError, match=r"study\.toml.*metric = 'auc'"):
        load_spec(path)


def test_bad_file_names(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    (tmp_path / "study.json").write_text("{}")
    with pytest.raises(SpecError, match=r"\.toml, \.yaml or \.yml"):
        load_spec(tmp_path / "study.json")
    (tmp_path / "broken.toml").write_text("name = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(tmp_path / "broken.toml")


# ----------------------------------------------------------------------------- grid-time errors


def test_layer_out_of_range_raises_at_expand_grid():
    spec = StudySpec.from_dict(_with(layers={"modes": ["individual"], "layers": [0, 5]}))
    assert expand_grid(spec, n_layers=6, n_heads=4)  # fine on a deeper model
    with pytest.raises(SpecError, match=r"layers \[5\] are out of range.*0\.\.4"):
        expand_grid(spec, n_layers=5, n_heads=4)
    explicit = StudySpec.from_dict(_with(layers={"modes": ["explicit"], "explicit": [[1, 7]]}))
    with pytest.raises(SpecError, match=r"layers \[7\] are out of range"):
        expand_grid(explicit, n_layers=5, n_heads=4)


def test_a_grid_without_layers_or_conditions_raises_at_expand_grid():
    spec = StudySpec.from_dict(BASE)
    with pytest.raises(SpecError, match=r"'cross' acts on attention layers, but the model has no"):
        expand_grid(spec, n_layers=0, n_heads=4)
    no_layer = StudySpec.from_dict(_with(layers={"modes": ["individual"], "layers": []}))
    with pytest.raises(SpecError, match="the study grid is empty"):
        expand_grid(no_layer, n_layers=2, n_heads=4)


def test_a_flat_heads_list_is_one_head_set():
    assert StudySpec.from_dict(_with(heads=[0, 1])).heads == ((0, 1),)
    assert StudySpec.from_dict(_with(heads=[[0, 1]])).heads == ((0, 1),)
    # heads inside the expression alone, or with only "all" at the top level, are fine
    spec = StudySpec.from_dict(
        _with(heads=["all"], interventions=[{"name": "c", "edges": "cross_modal & heads(0)"}])
    )
    assert spec.interventions[0].edges == "cross_modal & heads(0)"


def test_heads_out_of_range_raises_at_expand_grid():
    spec = StudySpec.from_dict(_with(heads=["all", [0, 4]]))
    assert expand_grid(spec, n_layers=2, n_heads=8)
    with pytest.raises(SpecError, match=r"heads \[4\] are out of range.*0\.\.3"):
        expand_grid(spec, n_layers=2, n_heads=4)


def test_unknown_group_in_edges_raises_spec_error_at_run_time():
    spec = StudySpec.from_dict(_intervention(edges="within(eeg)"))  # parses: groups are names
    with pytest.raises(SpecError) as info:
        run_study(spec, models={1: tiny_subject()}, progress=False)
    message = str(info.value)
    assert "'x'" in message and "eeg" in message


def test_an_intervention_built_without_an_action_is_refused_where_it_is_built():
    from emg_lens.studies.ablation.spec import Intervention

    with pytest.raises(SpecError, match=r"Intervention \(x\) needs exactly one of edges, hook"):
        Intervention("x")


def test_a_hooked_model_that_cannot_be_digested_is_named_without_its_arrays(tmp_path):
    model, data = tiny_subject()
    model.add_hook("blocks.0.hook_resid_pre", lambda act, hook: act)
    with pytest.raises(StudyError) as info:
        run_study(StudySpec.from_dict(BASE), models={1: (model, data)}, out_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("subject 1: cannot digest its in-memory (model, data): the model")
    assert "has hooks on blocks.0.hook_resid_pre" in message and "array(" not in message


def test_unknown_modality_raises_spec_error_at_run_time():
    spec = StudySpec.from_dict(_intervention(zero_modality="eeg"))
    with pytest.raises(
        SpecError, match=r"zero_modality must be one of \['emg', 'acc'\], got 'eeg'"
    ):
        run_study(spec, models={1: tiny_subject()}, progress=False)


def test_unknown_subject_raises_spec_error():
    spec = StudySpec.from_dict(_with(subjects=[1, 2]))
    with pytest.raises(SpecError, match=r"subjects \[2\] have no model; available: \[1\]"):
        run_study(spec, models={1: tiny_subject()}, progress=False)


# ----------------------------------------------------------------------------- round trips

FULL = {
    "name": "full",
    "models": "runs/isonet",
    "description": "every field set",
    "metric": "macro_f1",
    "subjects": [3, 1],
    "heads": ["all", [0, 2], [1]],
    "interventions": [
        {"name": "uni", "edges": "unimodal"},
        {"name": "cross", "edges": "cross_modal"},
        {"name": "acc_off", "zero_modality": "acc"},
        {"name": "custom", "hook": "hooks/x.py:edges"},
    ],
    "layers": {
        "modes": ["individual", "from_first", "from_last", "all", "explicit"],
        "layers": [0, 2],
        "explicit": [[0, 1], [3]],
    },
    "stats": {"test": "wilcoxon", "correction": "holm", "family": "all"},
}


@pytest.mark.parametrize("data", [BASE, FULL], ids=["minimal", "full"])
def test_to_dict_from_dict_round_trip(data):
    spec = StudySpec.from_dict(data)
    again = StudySpec.from_dict(spec.to_dict())
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()
    assert again.to_dict() == spec.to_dict()


def test_a_metric_list_keeps_its_order_and_one_metric_its_old_form():
    """``metric`` is one name or a list; a study of one metric writes (and fingerprints) the
    string it always did, so stores of earlier runs stay valid."""
    several = StudySpec.from_dict({**BASE, "metric": ["margin", "accuracy", "kl"]})
    assert several.metrics == ("margin", "accuracy", "kl") and several.metric == "margin"
    assert several.to_dict()["metric"] == ["margin", "accuracy", "kl"]
    one = StudySpec.from_dict({**BASE, "metric": "flip_rate"})
    assert one.metrics == ("flip_rate",) and one.to_dict()["metric"] == "flip_rate"
    assert '"metric": "accuracy"' in StudySpec.from_dict(BASE).fingerprint()


def test_a_training_study_scores_predictions_only():
    from emg_lens.studies import TrainingStudySpec

    data = {
        "kind": "training",
        "name": "t",
        "architectures": ["IsoNet"],
        "metric": "margin",
        "data": {"dataset": "synthetic", "subjects": [1, 2]},
    }
    with pytest.raises(SpecError, match=r"metric = 'margin'; a training study scores predictions"):
        TrainingStudySpec.from_dict(data)


def test_fingerprint_tells_studies_apart():
    a = StudySpec.from_dict(FULL)
    b = StudySpec.from_dict({**FULL, "metric": "accuracy"})
    assert a != b and a.fingerprint() != b.fingerprint()


def test_edge_expressions_are_stored_in_canonical_form():
    # Equal edge sets written differently give equal specs (and so equal condition keys).
    a = StudySpec.from_dict(_intervention(edges="cross_modal&heads( 2 , 0 )"))
    b = StudySpec.from_dict(_intervention(edges="cross_modal & heads(0,2)"))
    assert a.interventions[0].edges == b.interventions[0].edges == "cross_modal & heads(0,2)"
    assert a == b and a.fingerprint() == b.fingerprint()


def test_full_spec_fields():
    spec = StudySpec.from_dict(FULL)
    assert spec.heads == (None, (0, 2), (1,))
    assert spec.subjects == (3, 1)
    assert spec.layers.explicit == ((0, 1), (3,))
    assert [i.acts_on_layers for i in spec.interventions] == [True, True, False, True]


FULL_TOML = """
name = "full"
models = "runs/isonet"
description = "every field set"
metric = "macro_f1"
subjects = [3, 1]
heads = ["all", [0, 2], [1]]

[[interventions]]
name = "uni"
edges = "unimodal"

[[interventions]]
name = "cross"
edges = "cross_modal"

[[interventions]]
name = "acc_off"
zero_modality = "acc"

[[interventions]]
name = "custom"
hook = "hooks/x.py:edges"

[layers]
modes = ["individual", "from_first", "from_last", "all", "explicit"]
layers = [0, 2]
explicit = [[0, 1], [3]]

[stats]
test = "wilcoxon"
correction = "holm"
family = "all"
"""


def test_toml_and_yaml_files_load_to_equal_specs(tmp_path):
    (tmp_path / "study.toml").write_text(FULL_TOML)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(FULL))
    (tmp_path / "study.yml").write_text(yaml.safe_dump(FULL, default_flow_style=True))
    toml = load_spec(tmp_path / "study.toml")
    assert toml == load_spec(tmp_path / "study.yaml") == load_spec(tmp_path / "study.yml")
    assert toml == StudySpec.from_dict(FULL) == load_spec(FULL)
    assert toml.fingerprint() == StudySpec.from_dict(FULL).fingerprint()
    assert toml.source_dir == str(tmp_path)
    assert load_spec(toml) is toml


# ----------------------------------------------------------------------------- hook references

HOOK_FILE = textwrap.dedent(
    """
    from emg_lens.edges import between

    edges = between("emg", "acc")
    expression = "within(acc) & heads(1)"
    number = 5


    def factory(model, layers):
        return []
    """
)


def _spec_in(folder, hook: str) -> StudySpec:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(
        f'name = "t"\nmodels = "demo"\n[[interventions]]\nname = "h"\nhook = "{hook}"\n'
    )
    return load_spec(path)


def test_hook_resolves_in_the_spec_folder(tmp_path):
    (tmp_path / "studies" / "hooks").mkdir(parents=True)
    (tmp_path / "studies" / "hooks" / "x.py").write_text(HOOK_FILE)
    spec = _spec_in(tmp_path / "studies", "hooks/x.py:edges")
    value = spec.resolve_hook(spec.interventions[0].hook, allow_code=True)
    assert isinstance(value, EdgeSet) and value == parse("between(emg, acc)")
    assert spec.resolve_hook("hooks/x.py:expression", allow_code=True) == parse(
        "within(acc) & heads(1)"
    )
    assert callable(spec.resolve_hook("hooks/x.py:factory", allow_code=True))
    with pytest.raises(SpecError, match="allow-code"):
        spec.resolve_hook("hooks/x.py:edges")  # no consent, no execution


def test_the_spec_folders_parent_is_not_searched(tmp_path):
    # The parent (and the working directory) used to be searched: code outside the study's
    # own folder tree is never looked up (issue 18).
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "x.py").write_text(HOOK_FILE)
    spec = _spec_in(tmp_path / "studies", "hooks/x.py:edges")
    with pytest.raises(SpecError, match="not found"):
        spec.resolve_hook("hooks/x.py:edges", allow_code=True)


def test_missing_hook_file(tmp_path):
    spec = _spec_in(tmp_path / "studies", "hooks/missing.py:edges")
    with pytest.raises(SpecError) as info:
        spec.resolve_hook(spec.interventions[0].hook)
    message = str(info.value)
    assert "'hooks/missing.py'" in message and "not found" in message
    assert str((tmp_path / "studies").resolve()) in message


def test_missing_hook_attribute(tmp_path):
    (tmp_path / "studies" / "hooks").mkdir(parents=True)
    (tmp_path / "studies" / "hooks" / "x.py").write_text(HOOK_FILE)
    spec = _spec_in(tmp_path / "studies", "hooks/x.py:edgez")
    with pytest.raises(SpecError) as info:
        spec.resolve_hook(spec.interventions[0].hook, allow_code=True)
    message = str(info.value)
    assert "x.py" in message and "'edgez'" in message
    assert "edges" in message and "factory" in message  # what the file does define


def test_hook_of_the_wrong_type(tmp_path):
    (tmp_path / "studies" / "hooks").mkdir(parents=True)
    (tmp_path / "studies" / "hooks" / "x.py").write_text(HOOK_FILE)
    spec = _spec_in(tmp_path / "studies", "hooks/x.py:number")
    with pytest.raises(SpecError) as info:
        spec.resolve_hook(spec.interventions[0].hook, allow_code=True)
    message = str(info.value)
    assert "hooks/x.py:number" in message and "int" in message and "EdgeSet" in message


def test_hook_with_a_bad_expression_or_import_error(tmp_path):
    (tmp_path / "studies" / "hooks").mkdir(parents=True)
    (tmp_path / "studies" / "hooks" / "x.py").write_text('edges = "cross_modal &"\n')
    (tmp_path / "studies" / "hooks" / "broken.py").write_text("import not_a_module_at_all\n")
    spec = _spec_in(tmp_path / "studies", "hooks/x.py:edges")
    with pytest.raises(SpecError, match="column"):
        spec.resolve_hook("hooks/x.py:edges", allow_code=True)
    with pytest.raises(SpecError, match=r"broken\.py failed to import.*not_a_module_at_all"):
        spec.resolve_hook("hooks/broken.py:edges", allow_code=True)
