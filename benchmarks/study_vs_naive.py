"""The study runner vs a naive loop of one hooked forward pass per condition, and vs the lower
bound of the runner's own plan (docs/DESIGN.md §9).

All three evaluate the paper's Table-3 grid (unimodal / cross-modal masks x individual /
from_first / from_last x every layer, plus the baseline) on IsoNets with random weights and
random test windows (``--preset demo``: 32-D, 4 heads; ``--preset paper``: 512-D, 8 heads,
1000-sample windows):

- the runner: ``run_study(spec, models={s: (model, SubjectData)}, verify=False)``, which shares
  every common prefix of per-layer masks, evaluates equal effects once, and drops a last-layer
  mask that cuts no position the readout reads;
- the naive loop: for every grid row of every subject, one ``model.run_with_hooks`` full
  forward pass with ``mask_edges`` at ``blocks.{l}.attn.hook_attn_scores`` (no sharing);
- the lower bound: what every study must do, the forward passes over the windows with the
  masks, nothing of the runner's bookkeeping (`emg_lens.studies.ablation.evaluate.tree_plan`),
  run bare: per subject and window batch, one embedding, one block per distinct non-empty
  mask-sequence prefix, with its mask (its ``ln1`` and q/k/v projections once per parent, as
  the runner shares them; the last layer at the query rows the readout reads), in the calls
  the runner makes (`windows_per_call`: on a CPU, a paper-size window batch in calls of 55
  windows), and one readout per distinct effect. No copy to the host, no metric, no check.
  `tests/unit/studies/ablation/test_study_bound.py` checks that the runner runs exactly these
  blocks.

The script first asserts that the runner and the naive loop give identical predictions for
every condition of every subject (the labels are the unmasked model's own predictions, so
every prediction a mask changes lowers the accuracy). It then times the three in the same
rounds (a warm-up, then ``--repeats`` rounds, the order rotated every round, so load hits them
alike), and runs the runner once more with timers on its phases. It prints one JSON line:

- ``speedup_vs_naive``: naive / runner seconds, ``{min, median, max}`` over the rounds
  (target >= 2.5 on the demo preset);
- ``runner_vs_lower_bound``: runner / lower-bound seconds, likewise (1 would be perfect;
  target <= 1.2);
- ``fastest_runner_vs_fastest_bound``: the fastest runner round / the fastest bound round:
  load only ever adds time, so the two fastest rounds are the least disturbed estimate;
- ``cells_per_s``: grid cells (subjects x conditions) per second of the median runner round;
- ``breakdown_s``: where the instrumented runner round spends its time: ``embed``, ``blocks``,
  ``readout``, ``score`` (metrics), ``finite_check``, ``statistics`` (the summary table),
  ``verify`` (with ``--verify``), ``other`` (grid, plan, tree bookkeeping, tables);
- ``distinct_layer_evals`` / ``naive_layer_evals``: block evaluations (per window batch, summed
  over subjects) the runner's plan needs / the naive loop runs;
- ``s_runner``, ``s_naive``, ``s_lower_bound``: median seconds per round;
- ``runner_form``: per subject, the form the runner's rule chose for its conditions and why
  (`emg_lens.studies.ablation.stacking`).

With ``--batch-conditions`` the runner also runs with each layer's conditions broadcast over
the window batch and stacked on the batch axis (one mask per row), and the line adds
``batched_equal`` (true: the two forms' per-subject tables, summaries and predictions are
identical), ``batched_logits_max_diff`` (0.0: their logits bit for bit),
``s_runner_broadcast``, ``s_runner_stacked`` (median seconds per round, timed in the same
rounds), ``speedup_vs_naive_<form>`` and ``<form>_vs_lower_bound`` (as above, per form) and
``stacked_vs_broadcast`` (stacked / broadcast seconds, ``{min, median, max}``).

    python benchmarks/study_vs_naive.py [--preset demo] [--subjects 2] [--windows 300]
    python benchmarks/study_vs_naive.py --preset paper   # 1 subject, 256 windows, 3 rounds
    python benchmarks/study_vs_naive.py --quick   # 1 subject, 24 windows, 3 layers: seconds
    python benchmarks/study_vs_naive.py --preset paper --device cuda   # all three on the GPU
    python benchmarks/study_vs_naive.py --quick --batch-conditions   # both forms, equal?
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
from _harness import PhaseTimer, patched, rounds, spread

from emg_lens import EncoderConfig
from emg_lens.cli.common import resolve_device
from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import parse
from emg_lens.hooks import attn_scores_filter, mask_edges
from emg_lens.models import IsoNet
from emg_lens.studies import StudyResult, StudySpec, expand_grid, run_study
from emg_lens.studies.ablation import evaluate as evaluate_module
from emg_lens.studies.ablation import runner as runner_module
from emg_lens.studies.ablation.evaluate import TreePlan, tree_plan
from emg_lens.studies.ablation.grid import BASELINE
from emg_lens.studies.ablation.stacking import FORMS, windows_per_call

SPEC = {
    "name": "table3",
    "models": "in memory",
    "interventions": [
        {"name": "uni", "edges": "unimodal"},
        {"name": "cross", "edges": "cross_modal"},
    ],
    "layers": {"modes": ["individual", "from_first", "from_last"]},
}

# Defaults per preset: the paper's model is ~100x the demo's work per window. The weight std
# gives both the same query/key scale (d_model * std^2 = 1.28), wider than training's 0.02 so
# that masks change predictions; at 0.2 the paper's attention logits are so large that float32
# SDPA and the hooked path differ by more than verification's 1e-4.
SIZES = {
    "demo": {"subjects": 2, "windows": 300, "repeats": 5, "init_range": 0.2},
    "paper": {"subjects": 1, "windows": 256, "repeats": 3, "init_range": 0.05},
}


def _subject(
    seed: int, preset: str, n_windows: int, n_layers: int, init_range: float, device: torch.device
):
    """A random-weight IsoNet (on ``device``) and random windows labelled with its own
    predictions on the CPU."""
    cfg = EncoderConfig.preset(
        preset, seed=seed, dropout=0.0, n_layers=n_layers, init_range=init_range
    )
    model = IsoNet(cfg).eval()
    gen = torch.Generator().manual_seed(1000 + seed)
    X = torch.randn(n_windows, cfg.n_channels, cfg.n_samples, generator=gen)
    with torch.inference_mode():
        y = torch.cat([model(x).argmax(-1) for x in X.split(64)]).numpy()
    empty = np.zeros((0, cfg.n_channels, cfg.n_samples), np.float32)
    data = SubjectData(
        subject=seed,
        modalities=dict(cfg.modalities),
        classes=list(range(cfg.n_classes)),
        X_train=empty,
        y_train=np.zeros(0, int),
        rep_train=np.zeros(0, int),
        X_test=X.numpy(),
        y_test=y,
        rep_test=np.full(n_windows, 2),
    )
    return model.to(device), data


def _conditions(spec: StudySpec, model) -> list:
    return [BASELINE, *expand_grid(spec, model.cfg.n_layers, model.cfg.n_heads)]


@torch.inference_mode()
def _naive(spec: StudySpec, models: dict, batch_size: int) -> dict[tuple[int, str], np.ndarray]:
    """Predictions per (subject, condition key): one full hooked forward pass per grid row."""
    out = {}
    for subject, (model, data) in models.items():
        X = torch.as_tensor(data.X_test, device=model.cfg.device)
        for c in _conditions(spec, model):
            hooks = []
            if c.intervention is not None:
                hook = mask_edges(parse(c.intervention.edges), model.layout)
                hooks = [(attn_scores_filter(c.layers), hook)]
            preds = [
                model.run_with_hooks(X[i : i + batch_size], fwd_hooks=hooks).argmax(-1)
                for i in range(0, len(X), batch_size)
            ]
            out[(subject, c.key)] = torch.cat(preds).cpu().numpy()
    return out


def _runner(
    spec: StudySpec, models: dict, batch_size: int, verify: bool, form: str = "auto"
) -> StudyResult:
    device = next(iter(models.values()))[0].cfg.device
    return run_study(
        spec,
        models=models,
        batch_size=batch_size,
        verify=verify,
        progress=False,
        device=device,
        condition_form=form,
    )


def _runner_outputs(
    spec: StudySpec, models: dict, batch_size: int, form: str = "auto"
) -> tuple[dict[tuple[int, str], np.ndarray], dict[tuple[int, str], np.ndarray], StudyResult]:
    """The runner's predictions and logits per (subject, condition key), read off its scored
    cells, and its result, with the conditions in ``form``
    (`emg_lens.studies.ablation.stacking`)."""
    score, evaluate = evaluate_module.score_stacked, runner_module.evaluate_subject
    preds, logits = {}, {}

    def scored(out, *args):
        return [{**cell, "logits": np.asarray(o)} for cell, o in zip(score(out, *args), out)]

    def evaluated(spec, subject, todo, *, subject_id, **kw):
        cells = evaluate(spec, subject, todo, subject_id=subject_id, **kw)
        for key, cell in cells.items():
            logits[(subject_id, key)] = cell["logits"]
            preds[(subject_id, key)] = cell["logits"].argmax(-1)
        return cells

    with patched(
        [
            (evaluate_module, "score_stacked", scored),
            (runner_module, "evaluate_subject", evaluated),
        ]
    ):
        result = _runner(spec, models, batch_size, verify=True, form=form)  # timed without
    return preds, logits, result


def batched_conditions(spec: StudySpec, models: dict, batch_size: int) -> dict:
    """The runner with every layer's conditions broadcast, then stacked: whether the two give
    the same per-subject table, predictions and logits (``batched_equal``: table and
    predictions identical; ``batched_logits_max_diff``: 0.0 where bit for bit)."""
    runs = {form: _runner_outputs(spec, models, batch_size, form) for form in FORMS}
    (p_b, l_b, r_b), (p_s, l_s, r_s) = runs["broadcast"], runs["stacked"]
    same_table = r_b.per_subject.equals(r_s.per_subject) and r_b.summary.equals(r_s.summary)
    same_preds = p_b.keys() == p_s.keys() and all(np.array_equal(p_b[k], p_s[k]) for k in p_b)
    diff = max(float(np.abs(l_b[k] - l_s[k]).max()) for k in l_b)
    return {"batched_equal": bool(same_table and same_preds), "batched_logits_max_diff": diff}


def plans(spec: StudySpec, models: dict) -> dict[int, TreePlan]:
    """The runner's plan per subject: block evaluations and readouts per window batch."""
    return {s: tree_plan(spec, model, _conditions(spec, model)) for s, (model, _) in models.items()}


@torch.inference_mode()
def lower_bound(models: dict, plans: dict[int, TreePlan], batch_size: int) -> None:
    """The work the runner's plan cannot avoid, run bare: the forward passes over the windows
    with the masks, nothing of the runner's bookkeeping. Per subject and window batch, one
    embedding; per layer ``l``, one projection of block ``l`` (``ln1`` and q/k/v) per parent
    prefix, shared by its children (`TreePlan.children`), and the rest of the block once per
    child with its mask (`TreePlan.masks`, as the runner lays them: ``[1, head, q, k]``), the
    last layer at ``plan.rows`` (the query rows the readout reads); and ``plan.effects``
    readouts."""
    for subject, (model, data) in models.items():
        X = torch.as_tensor(data.X_test, device=model.cfg.device)
        plan = plans[subject]
        masks = [m[None].to(X.device) for m in plan.masks]
        last = len(model.blocks) - 1
        per_call = windows_per_call(model, X.device, batch_size)  # the runner's calls
        for start in range(0, len(X), per_call):
            states = {(): model(X[start : start + per_call], stop_at_layer=0)}
            for layer, (block, children) in enumerate(zip(model.blocks, plan.children)):
                rows = list(plan.rows) if plan.rows is not None and layer == last else None
                projected, out = {}, {}
                for child in children:
                    x = states[child[:-1]]
                    if child[:-1] not in projected:
                        projected[child[:-1]] = block.project(x, rows)
                    mask = None if child[-1] is None else masks[child[-1]]
                    out[child] = block.from_projected(x, projected[child[:-1]], mask)
                states = out if layer < last else states
            for seq in plan.children[-1]:
                model.readout(states[seq[:-1]], "logits")
    if X.is_cuda:
        torch.cuda.synchronize()  # the runner and the naive loop end on the host too


BLOCK_WORK = ("forward", "project", "from_projected", "rows_forward")


def breakdown(spec: StudySpec, models: dict, batch_size: int, verify: bool) -> dict[str, float]:
    """Seconds per phase of one runner round with timers on (see the module docstring); on a
    GPU the timers synchronise it, so the phases add up to more than an untimed round."""
    cuda = torch.device(next(iter(models.values()))[0].cfg.device).type == "cuda"
    timer = PhaseTimer(cuda)
    replacements = []
    for model, _ in models.values():
        replacements += [
            (model, "forward", timer.wrap(model.forward, "embed")),
            (model, "readout", timer.wrap(model.readout, "readout")),
        ]
        for b in model.blocks:  # whole calls, and the shared projections and what follows
            replacements += [(b, m, timer.wrap(getattr(b, m), "blocks")) for m in BLOCK_WORK]
    for name, phase in [
        ("score_stacked", "score"),
        ("score_logits", "score"),
        ("_refuse_non_finite", "finite_check"),
    ]:
        replacements.append(
            (evaluate_module, name, timer.wrap(getattr(evaluate_module, name), phase))
        )
    replacements += [
        (evaluate_module, "_verify", timer.wrap(evaluate_module._verify, "verify", inclusive=True)),
        (
            StudyResult,
            "from_table",
            staticmethod(timer.wrap(StudyResult.from_table, "statistics", inclusive=True)),
        ),
    ]
    with patched(replacements):
        start = time.perf_counter()
        _runner(spec, models, batch_size, verify)
        total = time.perf_counter() - start
    out = {phase: round(s, 4) for phase, s in sorted(timer.seconds.items())}
    out["other"] = round(total - sum(timer.seconds.values()), 4)
    out["total"] = round(total, 4)
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(SIZES), default="demo")
    parser.add_argument("--subjects", type=int, help="default: 2 (demo), 1 (paper)")
    parser.add_argument("--windows", type=int, help="default: 300 (demo), 256 (paper)")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256, help="window batch, all three")
    parser.add_argument("--repeats", type=int, help="rounds; default: 5 (demo), 3 (paper)")
    parser.add_argument("--init-range", type=float, help="weight std; 0.2 (demo), 0.05 (paper)")
    parser.add_argument("--verify", action="store_true", help="time the runner with verify=True")
    parser.add_argument(
        "--batch-conditions",
        action="store_true",
        help="also run and time the runner with each layer's conditions broadcast and stacked",
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (default: cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (default: torch's); 1 steadies a loaded machine",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 subject, 24 windows, 3 layers, 1 round"
    )
    args = parser.parse_args(argv)
    for key, value in SIZES[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.subjects, args.windows, args.layers, args.repeats = 1, 24, 3, 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    spec = StudySpec.from_dict(SPEC)
    models = {
        s: _subject(s, args.preset, args.windows, args.layers, args.init_range, device)
        for s in range(1, args.subjects + 1)
    }
    model = models[1][0]

    # Identical predictions first.
    naive = _naive(spec, models, args.batch)
    ours, _, auto = _runner_outputs(spec, models, args.batch)
    assert naive.keys() == ours.keys(), "the runner and the naive loop ran different grids"
    mismatched = sorted(k for k in naive if not np.array_equal(ours[k], naive[k]))
    assert not mismatched, f"runner != naive on (subject, condition key) {mismatched}"
    baseline = {s: naive[(s, BASELINE.key)] for s in models}
    changed = sum(not np.array_equal(p, baseline[s]) for (s, _), p in naive.items())

    batched = batched_conditions(spec, models, args.batch) if args.batch_conditions else {}

    # Then the three (with --batch-conditions, the runner in both forms too), in the same rounds.
    plan = plans(spec, models)
    lower_bound(models, plan, args.batch)  # warm-up
    runs = {
        "runner": lambda: _runner(spec, models, args.batch, args.verify),
        "naive": lambda: _naive(spec, models, args.batch),
        "bound": lambda: lower_bound(models, plan, args.batch),
    }
    if args.batch_conditions:
        for form in FORMS:
            runs[form] = lambda form=form: _runner(spec, models, args.batch, args.verify, form)
    times = rounds(runs, args.repeats, cuda=device.type == "cuda")
    runner_s = statistics.median(times["runner"])
    n_batches = -(-args.windows // args.batch)
    n_conditions = len(naive) // args.subjects  # grid rows + baseline, per subject
    result = {
        "benchmark": "study_vs_naive",
        "preset": args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "subjects": args.subjects,
        "windows": args.windows,
        "batch": args.batch,
        "n_layers": args.layers,
        "d_model": model.cfg.d_model,
        "n_heads": model.cfg.n_heads,
        "tokens": model.layout.n_tokens,
        "init_range": args.init_range,
        "conditions": n_conditions,
        "grid_effects": len({c.effect for c in _conditions(spec, model)}),
        "distinct_effects": plan[1].effects,
        "conditions_changed": changed,
        "distinct_layer_evals": sum(p.blocks for p in plan.values()) * n_batches,
        "naive_layer_evals": n_conditions * args.layers * args.subjects * n_batches,
        "s_runner": round(runner_s, 4),
        "s_naive": round(statistics.median(times["naive"]), 4),
        "s_lower_bound": round(statistics.median(times["bound"]), 4),
        "speedup_vs_naive": spread([n / r for n, r in zip(times["naive"], times["runner"])]),
        "runner_vs_lower_bound": spread([r / b for r, b in zip(times["runner"], times["bound"])]),
        "fastest_runner_vs_fastest_bound": round(min(times["runner"]) / min(times["bound"]), 3),
        "cells_per_s": round(args.subjects * n_conditions / runner_s, 2),
        "breakdown_s": breakdown(spec, models, args.batch, args.verify),
        "repeats": args.repeats,
        "verify": args.verify,
        "runner_form": {str(s): form for s, form in auto.condition_forms.items()},  # JSON keys
    }
    if args.batch_conditions:
        result.update(batched)
        for form in FORMS:
            result[f"s_runner_{form}"] = round(statistics.median(times[form]), 4)
            result[f"speedup_vs_naive_{form}"] = spread(
                [n / r for n, r in zip(times["naive"], times[form])]
            )
            result[f"{form}_vs_lower_bound"] = spread(
                [r / b for r, b in zip(times[form], times["bound"])]
            )
        result["stacked_vs_broadcast"] = spread(
            [s / b for s, b in zip(times["stacked"], times["broadcast"])]
        )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
