"""Grid expansion (docs/DESIGN.md §5): intervention x mode x layer x heads, deterministic keys, and
effects that tell which rows do the same thing."""

from __future__ import annotations

import pytest

from emg_lens.errors import SpecError
from emg_lens.studies import Condition, StudySpec, expand_grid
from emg_lens.studies.ablation.grid import BASELINE
from tests.tiny import uni_and_cross

TABLE3 = {
    "name": "table3",
    "models": "demo",
    "interventions": uni_and_cross(),
    "layers": {"modes": ["individual", "from_first", "from_last"]},
}


def _spec(**changes) -> StudySpec:
    return StudySpec.from_dict({**TABLE3, **changes})


def test_table3_grid_for_five_layers():
    grid = expand_grid(_spec(), n_layers=5, n_heads=4)
    assert len(grid) == 2 * 3 * 5
    # Per intervention, the 15 layer sets are: individual {0} {1} {2} {3} {4}; from_first
    # {0} {0,1} {0,1,2} {0..3} {0..4}; from_last {0..4} {1..4} {2..4} {3,4} {4}. from_first
    # at 0 is individual 0, from_last at 4 is individual 4, from_last at 0 is from_first at 4:
    # 15 - 3 = 12 distinct layer sets, so 2 x 12 = 24 distinct effects (uni and cross differ).
    assert len({c.effect for c in grid}) == 24
    assert len({c.key for c in grid}) == 30  # every row keeps its own key
    rows = [(c.name, c.mode, c.layer, c.layers) for c in grid]
    assert rows[:7] == [
        ("uni", "individual", 0, (0,)),
        ("uni", "individual", 1, (1,)),
        ("uni", "individual", 2, (2,)),
        ("uni", "individual", 3, (3,)),
        ("uni", "individual", 4, (4,)),
        ("uni", "from_first", 0, (0,)),
        ("uni", "from_first", 1, (0, 1)),
    ]
    assert rows[10:15] == [
        ("uni", "from_last", 0, (0, 1, 2, 3, 4)),
        ("uni", "from_last", 1, (1, 2, 3, 4)),
        ("uni", "from_last", 2, (2, 3, 4)),
        ("uni", "from_last", 3, (3, 4)),
        ("uni", "from_last", 4, (4,)),
    ]
    assert [c.name for c in grid] == ["uni"] * 15 + ["cross"] * 15
    assert all(c.heads is None for c in grid)


@pytest.mark.parametrize("n_layers", [1, 2, 3, 4, 6, 8])
def test_table3_grid_sizes(n_layers):
    grid = expand_grid(_spec(), n_layers=n_layers, n_heads=2)
    assert len(grid) == 2 * 3 * n_layers
    # L individual sets, L - 1 new from_first prefixes, L - 2 new from_last suffixes.
    per_intervention = 1 if n_layers == 1 else 3 * n_layers - 3
    assert len({c.effect for c in grid}) == 2 * per_intervention


def test_equal_effects_across_modes():
    grid = {(c.name, c.mode, c.layer): c for c in expand_grid(_spec(), n_layers=4, n_heads=4)}
    same = [
        (("uni", "from_first", 0), ("uni", "individual", 0)),
        (("uni", "from_last", 3), ("uni", "individual", 3)),
        (("cross", "from_first", 3), ("cross", "from_last", 0)),
    ]
    for a, b in same:
        assert grid[a].effect == grid[b].effect and grid[a].key != grid[b].key
    assert grid[("uni", "individual", 1)].effect != grid[("cross", "individual", 1)].effect


def test_keys_are_hard_coded():
    # Computed once; a change in how keys are derived (which would orphan every stored result)
    # must be deliberate. sha1 of JSON: independent of the process and of PYTHONHASHSEED.
    grid = expand_grid(_spec(), n_layers=5, n_heads=4)
    cross_rfe_2 = grid[15 + 5 + 5 + 2]
    assert (cross_rfe_2.name, cross_rfe_2.mode, cross_rfe_2.layer) == ("cross", "from_last", 2)
    assert cross_rfe_2.layers == (2, 3, 4)
    assert cross_rfe_2.effect == '[{"edges": "cross_modal"}, [2, 3, 4], null]'
    assert cross_rfe_2.key == "cf4e72f7e0d6"
    assert BASELINE.key == "c72097a64d82"


def test_keys_do_not_depend_on_the_position_in_the_grid():
    alone = expand_grid(
        StudySpec.from_dict({**TABLE3, "interventions": TABLE3["interventions"][1:]}), 5, 4
    )
    both = expand_grid(_spec(), 5, 4)
    assert [c.key for c in alone] == [c.key for c in both[15:]]
    # ... nor on how the expression was written
    rewritten = expand_grid(
        StudySpec.from_dict(
            {**TABLE3, "interventions": [{"name": "cross", "edges": " cross_modal "}]}
        ),
        5,
        4,
    )
    assert [c.key for c in rewritten] == [c.key for c in alone]


def test_keys_depend_on_name_and_effect():
    renamed = expand_grid(
        StudySpec.from_dict({**TABLE3, "interventions": [{"name": "x", "edges": "unimodal"}]}),
        5,
        4,
    )
    original = expand_grid(_spec(), 5, 4)[:15]
    assert [c.effect for c in renamed] == [c.effect for c in original]
    assert not {c.key for c in renamed} & {c.key for c in original}


def test_input_ablations_have_mode_input():
    spec = _spec(
        interventions=[
            {"name": "acc_off", "zero_modality": "acc"},
            {"name": "cross", "edges": "cross_modal"},
            {"name": "emg_off", "zero_modality": "emg"},
        ],
        heads=["all", [0], [1, 2]],
    )
    grid = expand_grid(spec, n_layers=3, n_heads=4)
    inputs = [c for c in grid if c.intervention.zero_modality]
    assert [(c.name, c.mode, c.layer, c.layers, c.heads) for c in inputs] == [
        ("acc_off", "input", None, (), None),
        ("emg_off", "input", None, (), None),
    ]
    assert len(grid) == 2 + 3 * 3 * 3  # one row per input ablation, whatever the layers/heads
    assert inputs[0].row()["mode"] == "input" and inputs[0].row()["layers"] == ""
    assert inputs[0].effect != inputs[1].effect


def test_heads_all_and_explicit_modes():
    spec = _spec(
        interventions=[{"name": "cross", "edges": "cross_modal"}],
        heads=["all", [2, 0]],
        layers={"modes": ["all", "explicit"], "explicit": [[3, 1, 1], [0]]},
    )
    grid = expand_grid(spec, n_layers=4, n_heads=4)
    assert [(c.mode, c.layer, c.layers, c.heads) for c in grid] == [
        ("all", None, (0, 1, 2, 3), None),
        ("all", None, (0, 1, 2, 3), (2, 0)),
        ("explicit", None, (1, 3), None),
        ("explicit", None, (1, 3), (2, 0)),
        ("explicit", None, (0,), None),
        ("explicit", None, (0,), (2, 0)),
    ]
    assert grid[1].row() == {
        "intervention": "cross",
        "mode": "all",
        "layer": None,
        "layers": "0,1,2,3",
        "heads": "2,0",
        "key": grid[1].key,
    }


def test_chosen_layers():
    grid = expand_grid(_spec(layers={"modes": ["from_first", "from_last"], "layers": [1]}), 3, 2)
    assert [(c.name, c.mode, c.layers) for c in grid] == [
        ("uni", "from_first", (0, 1)),
        ("uni", "from_last", (1, 2)),
        ("cross", "from_first", (0, 1)),
        ("cross", "from_last", (1, 2)),
    ]


def test_baseline():
    assert Condition(None, "none", None, (), None) == BASELINE
    assert BASELINE.name == "baseline" and BASELINE.row()["heads"] == "all"


@pytest.mark.parametrize(
    "changes",
    [
        {"layers": {"modes": ["explicit"], "explicit": [[1, 0], [0, 1]]}},
        {"layers": {"modes": ["individual"], "layers": [0, 0]}},
        {"heads": [[0], [0]]},
    ],
    ids=["explicit", "layers", "heads"],
)
def test_repeated_conditions_are_refused_or_merged(changes):
    try:
        grid = expand_grid(_spec(**changes), n_layers=3, n_heads=4)
    except SpecError as exc:  # refusing them, naming the repeat, is fine
        assert "duplicate" in str(exc) or "repeat" in str(exc)
        return
    keys = [c.key for c in grid]
    assert len(keys) == len(set(keys))  # ... and so is merging them
