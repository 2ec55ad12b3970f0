"""The two forms of a layer's conditions (`emg_lens.studies.ablation.stacking`): stacked on the
batch axis they give the broadcast form's outputs bit for bit on a CPU (a native model and
converted ones, masks that cut whole query rows, an unmasked child among masked ones, calls
split by the row limit); ``"timed"`` computes each child once and keeps the faster form; the
run records the form, why and the timing, and a rule it does not know is refused first."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import ArgumentError
from emg_lens.models import IsoNet
from emg_lens.studies import StudySpec, run_study
from emg_lens.studies.ablation import stacking
from emg_lens.studies.ablation.evaluate import _MaskTable, _model_reads, _run_prefix_tree
from emg_lens.studies.ablation.stacking import CPU_MEASURED, ConditionForm, run_children
from tests.unit.models import converted_models

with warnings.catch_warnings():  # braindecode's import (~5 s) at collection, not in a test's
    warnings.simplefilter("ignore")
    import braindecode.models  # noqa: F401

N_WINDOWS = 7


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a loaded 2-core machine: a second intra-op thread only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


MODELS = {
    "isonet_demo": lambda: IsoNet(
        EncoderConfig.preset("demo", n_layers=2, init_range=0.5, dropout=0.0, seed=0)
    ).eval(),
    "labram": lambda: converted_models.labram_model()[0],
    "cbramod": lambda: converted_models.cbramod_model()[0],
    "eegpt": lambda: converted_models.eegpt_model()[0],
}


def _table(model, n_masks: int = 5, seed: int = 0) -> _MaskTable:
    """``n_masks`` random cuts ``[heads, q, k]``; the first cuts every key of query 0 (the
    CLS row where there is one) in head 0, the second every key of query 1 in all heads."""
    gen = torch.Generator().manual_seed(seed)
    n = model.layout.n_tokens
    table = _MaskTable()
    for i in range(n_masks):
        mask = torch.rand(model.cfg.n_heads, n, n, generator=gen) < 0.3
        if i == 0:
            mask[0, 0, :] = True
        if i == 1:
            mask[:, 1, :] = True
        assert table.id(mask) == i
    return table


# Per layer (two layers): an unmasked child among masked ones at both layers, prefixes shared.
SEQUENCES = [
    (None, None),
    (None, 0),
    (None, 3),
    (0, None),
    (0, 0),
    (0, 1),
    (1, 1),
    (2, 4),
    (3, 2),
    (4, None),
    (4, 4),
]


def _tree(model, table, form: str, batch_size: int = 4) -> dict[tuple, torch.Tensor]:
    X = model.example_input(N_WINDOWS)
    form_ = ConditionForm(form)
    return _run_prefix_tree(
        model, X, SEQUENCES, table, batch_size, "logits", form_, _model_reads(model)
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_stacked_equals_broadcast_bit_for_bit(name):
    model = MODELS[name]()
    assert model.cfg.n_layers == 2
    table = _table(model)
    broadcast, stacked = _tree(model, table, "broadcast"), _tree(model, table, "stacked")
    assert broadcast.keys() == stacked.keys() == set(SEQUENCES)
    for seq in SEQUENCES:
        assert torch.isfinite(stacked[seq]).all(), seq
        assert torch.equal(broadcast[seq], stacked[seq]), seq
    # not vacuous: the cuts change the output, and differently
    outputs = {seq: out.numpy().tobytes() for seq, out in broadcast.items()}
    assert len(set(outputs.values())) > len(SEQUENCES) // 2


@pytest.mark.parametrize("rows", [[0], [1, 2, 3], [0, 3]])
def test_the_last_layer_writes_its_read_rows_as_an_index_copy_would(rows):
    """Consecutive read rows (a CLS readout's) are written as a slice, scattered ones by an
    index made on the device once: the parent's stream with those rows replaced either way."""
    model = MODELS["isonet_demo"]()
    block = model.blocks[-1]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, model.layout.n_tokens, model.cfg.d_model, generator=gen)
    mask = _table(model).masks[2][None]
    step = stacking.LayerStep(block, [(0,), (1,)], rows=rows)
    with torch.inference_mode():
        got = [step({(): x}, child, mask) for child in [(0,), (1,)]]
        out = block.from_projected(x, block.project(x, rows), mask)
    expected = x.index_copy(1, torch.tensor(rows), out)
    assert all(torch.equal(g, expected) for g in got)
    assert not torch.equal(out, x[:, rows])  # not vacuous: the rows changed
    assert (step._index is None) == (rows != [0, 3])  # the index only where a slice cannot do


def test_calls_split_at_the_row_limit_equal_too(monkeypatch):
    """At most 12 rows a call: the five masked children of layer 0 run three and two a call
    on the batch of four windows, four and one (broadcast) on the batch of three; the
    unmasked child and the lone one run from their parent's shared projections, not as
    whole calls."""
    model = MODELS["isonet_demo"]()
    table = _table(model)
    rows = []
    handle = model.blocks[0].register_forward_pre_hook(lambda m, a: rows.append(len(a[0])))
    monkeypatch.setattr(stacking, "STACK_ROWS", 12)
    try:
        stacked = _tree(model, table, "stacked")
    finally:
        handle.remove()
    assert rows == [12, 8, 12]
    broadcast = _tree(model, table, "broadcast")
    assert all(torch.equal(broadcast[s], stacked[s]) for s in SEQUENCES)


class _Block:
    """A stand-in block: ``x * (1 + mask.sum() / 100)`` row by row; it sleeps ``per_call``
    seconds a call and ``per_extra_row`` seconds a row beyond `WINDOWS` (a stacked call's
    rows), and records each row it computes by its parent's id (the states' first entry)."""

    def __init__(self, per_call: float = 0.0, per_extra_row: float = 0.0):
        self.per_call, self.per_extra_row = per_call, per_extra_row
        self.rows: list[int] = []
        self.calls = 0

    def __call__(self, x, mask):
        self.calls += 1
        time.sleep(self.per_call + self.per_extra_row * max(0, len(x) - WINDOWS))
        self.rows += x[:, 0, 0].long().tolist()
        if mask is None:
            return x
        return x * (1 + mask.flatten(1).sum(1)[:, None, None].to(x.dtype) / 100)


WINDOWS = 3


def _children(n_masked: int):
    """Parents ``(i,)`` whose states hold ``i``, each with one masked child ``(i, i)`` (mask
    ``i`` cuts ``i % 4 + 1`` entries), and an unmasked child ``(0, None)`` first."""
    states = {(i,): torch.full((WINDOWS, 2, 2), float(i)) for i in range(n_masked)}
    masks = []
    for i in range(n_masked):
        mask = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
        mask.view(-1)[: i % 4 + 1] = True
        masks.append(mask)
    return states, [(0, None), *[(i, i) for i in range(n_masked)]], masks


@pytest.mark.parametrize(
    ("costs", "expected"),
    [
        ({"per_call": 0.02}, "stacked"),  # a fixed cost per call: fewer, larger calls win
        ({"per_extra_row": 0.01}, "broadcast"),  # larger calls cost more: one per child wins
    ],
)
def test_timed_computes_each_child_once_and_keeps_the_faster(costs, expected):
    block = _Block(**costs)
    states, children, masks = _children(n_masked=6)
    form = ConditionForm("timed")
    out = run_children(block, states, children, masks, form)
    # each child once: the unmasked one's rows (parent 0) and each masked child's
    assert sorted(block.rows) == [0] * 2 * WINDOWS + [i for i in range(1, 6) for _ in "abc"]
    assert form.form == expected, form
    record = form.record()
    assert record["rule"] == "timed" and record["form"] == expected
    assert record["reason"] == "timed at the first layer with 6 masked conditions"
    assert record.keys() >= {"s_per_condition_broadcast", "s_per_condition_stacked"}
    reference = run_children(_Block(), states, children, masks, ConditionForm("broadcast"))
    assert all(torch.equal(out[c], reference[c]) for c in children)
    # the next layer runs the kept form alone: the unmasked child, then 1 or 6 calls
    block.calls = 0
    run_children(block, states, children, masks, form)
    assert block.calls == (2 if expected == "stacked" else 7)


def test_timed_waits_for_a_layer_with_enough_children_and_settles_to_broadcast():
    states, children, masks = _children(n_masked=stacking.MIN_TIMED - 1)
    form = ConditionForm("timed")
    run_children(_Block(), states, children, masks, form)
    assert form.form is None  # too few to time: undecided, broadcast for now
    form.settle()
    assert form.record() == {
        "rule": "timed",
        "form": "broadcast",
        "reason": f"no layer had {stacking.MIN_TIMED} masked conditions to time",
    }


def test_a_window_batch_that_fills_a_call_broadcasts(monkeypatch):
    monkeypatch.setattr(stacking, "STACK_ROWS", 5)  # 3 windows: one child a call
    states, children, masks = _children(n_masked=6)
    form = ConditionForm("timed")
    block = _Block()
    run_children(block, states, children, masks, form)
    assert form.form == "broadcast" and block.calls == 7
    assert form.reason == "a window batch fills a call (5 rows at most)"


def test_the_rules_resolve_without_timing():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert ConditionForm("auto").resolve(cpu, layerwise=True).reason == CPU_MEASURED
    assert ConditionForm("auto").resolve(cuda, layerwise=True).form is None  # timed there
    assert ConditionForm("stacked").resolve(cpu, layerwise=True).form == "stacked"
    attached = ConditionForm("stacked").resolve(cuda, layerwise=False)
    assert attached.form == "broadcast" and "attached" in attached.reason


def _subject(seed: int = 0) -> tuple[IsoNet, SubjectData]:
    cfg = EncoderConfig.preset("tiny", seed=seed, n_layers=3, init_range=0.5, dropout=0.0)
    model = IsoNet(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(6, cfg.n_channels, cfg.n_samples, generator=gen)
    y = np.arange(6) % cfg.n_classes
    data = SubjectData.from_windows(
        dict(cfg.modalities), (X.numpy(), y), subject=seed, classes=list(range(cfg.n_classes))
    )
    return model, data


SPEC = StudySpec.from_dict(
    {
        "name": "forms",
        "models": "in memory",
        "interventions": [
            {"name": "cross", "edges": "cross_modal"},
            {"name": "to_cls", "edges": "to_cls"},
            {"name": "uni", "edges": "unimodal"},
        ],
        "layers": {"modes": ["individual", "from_first"]},
    }
)


@pytest.mark.slow
def test_the_run_records_the_form_and_the_tables_do_not_change():
    models = {1: _subject(1), 2: _subject(2)}
    results = {
        rule: run_study(SPEC, models=models, batch_size=6, progress=False, condition_form=rule)
        for rule in ("auto", "stacked", "timed")
    }
    auto = results["auto"]
    assert auto.condition_forms == {
        s: {"rule": "auto", "form": "broadcast", "reason": CPU_MEASURED} for s in (1, 2)
    }
    assert f"conditions broadcast over the batch (subjects 1, 2): {CPU_MEASURED}" in (
        auto.console()
    )
    assert results["stacked"].condition_forms[1]["form"] == "stacked"
    assert "conditions stacked on the batch axis (subjects 1, 2): asked for" in (
        results["stacked"].console()
    )
    timed = results["timed"].condition_forms
    assert {timed[s]["form"] for s in (1, 2)} <= {"broadcast", "stacked"}
    assert all("s_per_condition_stacked" in timed[s] for s in (1, 2))
    assert "per condition: broadcast" in results["timed"].console()
    for result in results.values():
        assert result.per_subject.equals(auto.per_subject)
        assert result.summary.equals(auto.summary)


def test_an_unknown_rule_is_refused_before_anything_runs(monkeypatch):
    monkeypatch.setattr(
        "emg_lens.studies.ablation.runner.study_models",
        lambda *a: pytest.fail("the subjects were read"),
    )
    with pytest.raises(ArgumentError, match="condition_form='fast': expected one of 'auto'"):
        run_study(SPEC, models={1: _subject(1)}, condition_form="fast")
