"""The study runner's plan (`tree_plan`) and the lower bound that `benchmarks/study_vs_naive.py`
builds from it: the bound runs exactly the block evaluations the runner runs, at the runner's
batch shapes; the runner does not come in under it; and dropping a last-layer mask that cuts
no position the readout reads never changes a prediction."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import parse
from emg_lens.hooks import attn_scores_filter, mask_edges
from emg_lens.models import IsoNet
from emg_lens.studies import StudySpec, expand_grid, run_study
from emg_lens.studies.ablation import evaluate as evaluate_module
from emg_lens.studies.ablation.evaluate import evaluate_subject
from emg_lens.studies.ablation.grid import BASELINE
from emg_lens.studies.subjects import Subject
from emg_lens.user_code import StudyCode

BENCHMARKS = Path(__file__).resolve().parents[4] / "benchmarks"
N_WINDOWS, BATCH = 22, 8  # three window batches: 8, 8, 6


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a loaded 2-core machine: a second intra-op thread only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _benchmark():
    if str(BENCHMARKS) not in sys.path:  # the script imports `_harness` from its own folder
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("bench_study", BENCHMARKS / "study_vs_naive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _spec(*edges: str, heads=("all",), return_type: str = "logits") -> StudySpec:
    return StudySpec.from_dict(
        {
            "name": "bound",
            "models": "in memory",
            "interventions": [{"name": f"e{i}", "edges": e} for i, e in enumerate(edges)],
            "layers": {"modes": ["individual", "from_first", "from_last"]},
            "heads": list(heads),
            "return_type": return_type,
        }
    )


def _subject(seed: int = 0) -> tuple[IsoNet, SubjectData]:
    # A wide initialisation makes attention sharp, so masks change predictions.
    cfg = EncoderConfig.preset("tiny", seed=seed, n_layers=3, init_range=0.5, dropout=0.0)
    model = IsoNet(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(N_WINDOWS, cfg.n_channels, cfg.n_samples, generator=gen)
    y = np.arange(N_WINDOWS) % cfg.n_classes
    data = SubjectData.from_windows(
        dict(cfg.modalities), (X.numpy(), y), subject=seed, classes=list(range(cfg.n_classes))
    )
    return model, data


def _count_blocks(model) -> tuple[Counter, list]:
    """A counter of (layer, what, window rows, query rows) over the model's block work: whole
    calls (``"block"``), shared projections (``"project"``) and the rest of a block from
    them (``"from"``), and of (layer, ``"mask"``, the mask each of those applies); and an
    undo list."""
    calls: Counter = Counter()
    undo = []
    for layer, block in enumerate(model.blocks):
        undo.append(
            block.register_forward_pre_hook(
                lambda module, args, layer=layer: calls.update(
                    [(layer, "block", args[0].shape[0], args[0].shape[1])]
                )
            )
        )

        def project(resid, rows=None, layer=layer, real=block.project):
            n_query = resid.shape[1] if rows is None else len(rows)
            calls.update([(layer, "project", resid.shape[0], n_query)])
            return real(resid, rows)

        def from_projected(resid, projected, mask=None, layer=layer, real=block.from_projected):
            calls.update([(layer, "from", resid.shape[0], projected.q.shape[1])])
            cut = None if mask is None else (tuple(mask.shape), mask.flatten().nonzero().tolist())
            calls.update([(layer, "mask", str(cut))])  # which mask each call applies
            return real(resid, projected, mask)

        block.project, block.from_projected = project, from_projected
        undo.append(block)
    return calls, undo


def _undo(undo: list) -> None:
    for item in undo:
        if isinstance(item, torch.nn.Module):
            del item.project, item.from_projected
        else:
            item.remove()


def test_the_bound_runs_the_blocks_the_runner_runs():
    bench = _benchmark()
    model, data = _subject()
    models = {1: (model, data)}
    spec = _spec("cross_modal", "unimodal", "to_cls", heads=("all", [1, 3]))
    calls, undo = _count_blocks(model)
    try:
        run_study(spec, models=models, batch_size=BATCH, verify=False, progress=False)
        runner_calls = Counter(calls)
        calls.clear()
        plans = bench.plans(spec, models)
        bench.lower_bound(models, plans, BATCH)
    finally:
        _undo(undo)
    # The same work at the same shapes, with the same masks: per layer and window batch, one
    # projection per parent and the rest of the block once per distinct prefix, the last
    # layer at the CLS row alone.
    assert calls == runner_calls
    masked = sum(n for key, n in calls.items() if key[1] == "mask" and key[2] != "None")
    assert masked > 0
    runner_calls = Counter({k: n for k, n in runner_calls.items() if k[1] != "mask"})
    plan = plans[1]
    assert plan.rows == (0,)
    n_tokens, last = model.layout.n_tokens, model.cfg.n_layers - 1
    expected = Counter()
    for layer, (parents, n) in enumerate(
        zip(plan.projections_per_layer, plan.blocks_per_layer, strict=True)
    ):
        n_query = 1 if layer == last else n_tokens
        for rows in (BATCH, BATCH, N_WINDOWS % BATCH):
            expected.update({(layer, "project", rows, n_query): parents})
            expected.update({(layer, "from", rows, n_query): n})
    assert runner_calls == expected
    # Sharing at work: fewer blocks than one pass per condition; at the last layer fewer
    # than the grid's effects (cross_modal and unimodal leave the CLS row alone: dropped),
    # more than one per parent (to_cls cuts the CLS row: kept).
    per_layer = plan.blocks_per_layer
    grid = [BASELINE, *expand_grid(spec, 3, model.cfg.n_heads)]
    assert sum(per_layer) < 3 * len(grid)
    assert per_layer[1] < per_layer[2] < len({c.effect for c in grid})


def test_the_runner_is_not_under_the_bound_beyond_the_noise():
    """The runner's evaluation of a subject does the bound's work and more, so its slowest
    round cannot be faster than the bound's fastest. Load only slows a run down, so this
    cannot flake. It is a coarse check: a bound running twice the blocks (~50 ms against the
    runner's ~40 ms here) failed it in 1 of 3 tries at load 8, and is the kind of error it
    catches on a quiet machine; the exact count is the test above."""
    bench = _benchmark()
    model, data = _subject()
    models = {1: (model, data)}
    spec = _spec("cross_modal", "unimodal")
    plans = bench.plans(spec, models)
    conditions = [BASELINE, *expand_grid(spec, 3, model.cfg.n_heads)]
    code = StudyCode.load(spec.code_files(), allow_code=False)
    run = {
        # What run_study calls per subject; the statistics after it are no part of the bound.
        "runner": lambda: evaluate_subject(
            spec,
            Subject(model, data),
            conditions,
            batch_size=BATCH,
            verify=False,
            subject_id=1,
            code=code,
        ),
        "bound": lambda: bench.lower_bound(models, plans, BATCH),
    }
    for fn in run.values():  # warm-up
        fn()
    times = bench.rounds(run, repeats=3)
    assert max(times["runner"]) >= min(times["bound"]), times


@pytest.mark.parametrize("return_type", ["logits", "avg_logits"])
def test_every_condition_predicts_what_a_hooked_pass_predicts(monkeypatch, return_type):
    model, data = _subject(seed=1)
    spec = _spec("cross_modal", "to_cls", heads=("all", [0, 2]), return_type=return_type)
    conditions = [BASELINE, *expand_grid(spec, 3, model.cfg.n_heads)]
    real = evaluate_module.score_stacked
    monkeypatch.setattr(
        evaluate_module,
        "score_stacked",
        lambda logits, *args, **kwargs: [
            {**cell, "pred": pred}
            for cell, pred in zip(real(logits, *args, **kwargs), np.asarray(logits).argmax(-1))
        ],
    )
    cells = evaluate_subject(
        spec,
        Subject(model, data),
        conditions,
        batch_size=BATCH,
        verify=True,
        subject_id=1,
        code=StudyCode.load(spec.code_files(), allow_code=False),
    )
    X = torch.as_tensor(data.X_test)
    base = model(X, return_type=return_type).argmax(-1).numpy()
    changed = 0
    with torch.inference_mode():
        for c in conditions:
            hooks = []
            if c.intervention is not None:
                edges = parse(c.intervention.edges)
                edges = edges if c.heads is None else edges.on_heads(c.heads)
                hooks = [(attn_scores_filter(c.layers), mask_edges(edges, model.layout))]
            expected = model.run_with_hooks(X, fwd_hooks=hooks, return_type=return_type)
            expected = expected.argmax(-1).numpy()
            np.testing.assert_array_equal(cells[c.key]["pred"], expected, err_msg=c.key)
            changed += bool((expected != base).any())
    # Both readouts have last-layer masks that change nothing (dropped) and ones that do
    # (kept: more last-layer blocks than parents).
    per_layer = evaluate_module.tree_plan(spec, model, conditions).blocks_per_layer
    assert per_layer[1] < per_layer[2] < len({c.effect for c in conditions})
    assert changed > len(conditions) // 3  # the masks matter: the comparison is not vacuous
