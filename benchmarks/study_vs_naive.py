"""The study runner vs a naive loop of one hooked forward pass per condition (DESIGN §9).

Both evaluate the paper's Table-3 grid (unimodal / cross-modal masks x individual /
from_first / from_last x every layer, plus the baseline) on demo-size IsoNets with random
weights and random test windows:

- the runner: ``run_study(spec, models={s: (model, SubjectData)}, verify=False)``, which shares
  every common prefix of per-layer masks and evaluates equal effects once;
- the naive loop: for every grid row of every subject, one ``model.run_with_hooks`` full
  forward pass with ``mask_edges`` at ``blocks.{l}.attn.hook_attn_scores`` (no sharing).

The script first asserts that both give identical per-condition accuracies (the labels are the
unmasked model's own predictions, so every prediction a mask changes lowers the accuracy), then
times the two alternately in one process (a warm-up, then ``--repeats`` rounds, the order
swapped every round) and reports medians. The lower bound is what the prefix tree cannot avoid:
(distinct non-empty prefixes of the conditions' mask sequences) x (one unmasked block on the
whole test set) + one embedding, per subject. It prints one JSON line:

- ``speedup_vs_naive``: naive seconds / runner seconds (target >= 2);
- ``runner_vs_lower_bound``: runner seconds / lower-bound seconds (1 would be perfect);
- ``distinct_layer_evals`` / ``naive_layer_evals``: block evaluations (per window batch,
  summed over subjects) the prefix tree needs / the naive loop runs.

    python benchmarks/study_vs_naive.py [--subjects 2] [--windows 300] [--repeats 5]
    python benchmarks/study_vs_naive.py --quick   # 1 subject, 24 windows, 3 layers: seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from emg_lens import EncoderConfig
from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import parse
from emg_lens.hooks import attn_scores_filter, mask_edges
from emg_lens.models import IsoNet
from emg_lens.studies import StudySpec, expand_grid, run_study
from emg_lens.studies.grid import BASELINE

SPEC = {
    "name": "table3",
    "models": "in memory",
    "interventions": [
        {"name": "uni", "edges": "unimodal"},
        {"name": "cross", "edges": "cross_modal"},
    ],
    "layers": {"modes": ["individual", "from_first", "from_last"]},
}


def _subject(seed: int, n_windows: int, n_layers: int, init_range: float):
    """A random-weight demo IsoNet and random windows labelled with its own predictions."""
    cfg = EncoderConfig.preset(
        "demo", seed=seed, dropout=0.0, n_layers=n_layers, init_range=init_range
    )
    model = IsoNet(cfg).eval()
    gen = torch.Generator().manual_seed(1000 + seed)
    X = torch.randn(n_windows, cfg.n_channels, cfg.n_samples, generator=gen)
    with torch.inference_mode():
        y = model(X).argmax(-1).numpy()
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
    return model, data


def _mask_sequences(spec: StudySpec, model) -> set[tuple]:
    """Per-layer mask sequences of the distinct effects (the baseline's is all None)."""
    n_layers = model.cfg.n_layers
    seqs = {(None,) * n_layers}
    for c in expand_grid(spec, n_layers, model.cfg.n_heads):
        seqs.add(tuple(c.intervention.edges if i in c.layers else None for i in range(n_layers)))
    return seqs


def _distinct_prefixes(seqs: set[tuple]) -> int:
    return len({seq[:k] for seq in seqs for k in range(1, len(seq) + 1)})


@torch.inference_mode()
def _naive(spec: StudySpec, models: dict, batch_size: int) -> dict[tuple[int, str], float]:
    """Accuracy per (subject, condition key): one full hooked forward pass per grid row."""
    out = {}
    for subject, (model, data) in models.items():
        X = torch.as_tensor(data.X_test)
        conditions = [BASELINE, *expand_grid(spec, model.cfg.n_layers, model.cfg.n_heads)]
        for c in conditions:
            hooks = []
            if c.intervention is not None:
                hook = mask_edges(parse(c.intervention.edges), model.layout)
                hooks = [(attn_scores_filter(c.layers), hook)]
            preds = [
                model.run_with_hooks(X[i : i + batch_size], fwd_hooks=hooks).argmax(-1)
                for i in range(0, len(X), batch_size)
            ]
            out[(subject, c.key)] = float((torch.cat(preds).numpy() == data.y_test).mean())
    return out


def _runner(spec: StudySpec, models: dict, batch_size: int) -> dict[tuple[int, str], float]:
    result = run_study(spec, models=models, batch_size=batch_size, verify=False, progress=False)
    return {(r.subject, r.key): r.value for r in result.per_subject.itertuples()}


@torch.inference_mode()
def _lower_bound_s(models: dict, distinct: dict[int, int], repeats: int) -> float:
    """Sum over subjects of distinct prefixes x one block + one embedding, on all windows."""
    total = 0.0
    for subject, (model, data) in models.items():
        X = torch.as_tensor(data.X_test)
        resid = model(X, stop_at_layer=0)
        block = model.blocks[0]
        block(resid)  # warm-up
        t_block = statistics.median(_timed(block, resid) for _ in range(repeats))
        t_embed = statistics.median(_timed(model, X, stop_at_layer=0) for _ in range(repeats))
        total += distinct[subject] * t_block + t_embed
    return total


def _timed(fn: Callable[..., object], *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256, help="window batch, both sides")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--init-range",
        type=float,
        default=0.2,
        help="weight init std; wider than training's 0.02 so masks change predictions",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 subject, 24 windows, 3 layers, 1 repeat"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.subjects, args.windows, args.layers, args.repeats = 1, 24, 3, 1

    spec = StudySpec.from_dict(SPEC)
    models = {
        s: _subject(s, args.windows, args.layers, args.init_range)
        for s in range(1, args.subjects + 1)
    }

    # Identical results first.
    naive, ours = _naive(spec, models, args.batch), _runner(spec, models, args.batch)
    assert naive.keys() == ours.keys(), "the runner and the naive loop ran different grids"
    mismatched = {k: (ours[k], naive[k]) for k in naive if ours[k] != naive[k]}
    assert not mismatched, f"runner != naive on {mismatched}"
    changed = sum(v != 1.0 for v in naive.values())  # conditions a mask changed

    # Then alternate timings.
    times: dict[str, list[float]] = {"runner": [], "naive": []}
    runs = {
        "runner": lambda: _runner(spec, models, args.batch),
        "naive": lambda: _naive(spec, models, args.batch),
    }
    for i in range(args.repeats):
        order = ["runner", "naive"] if i % 2 == 0 else ["naive", "runner"]
        for name in order:
            times[name].append(_timed(runs[name]))
    s_runner, s_naive = statistics.median(times["runner"]), statistics.median(times["naive"])

    distinct = {s: _distinct_prefixes(_mask_sequences(spec, m)) for s, (m, _) in models.items()}
    n_batches = -(-args.windows // args.batch)
    n_conditions = len(naive) // args.subjects  # grid rows + baseline, per subject
    s_lower = _lower_bound_s(models, distinct, max(args.repeats, 3))
    result = {
        "benchmark": "study_vs_naive",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "subjects": args.subjects,
        "windows": args.windows,
        "n_layers": args.layers,
        "conditions": n_conditions,
        "distinct_effects": len(_mask_sequences(spec, models[1][0])),
        "conditions_changed": changed,
        "distinct_layer_evals": sum(distinct.values()) * n_batches,
        "naive_layer_evals": n_conditions * args.layers * args.subjects * n_batches,
        "s_runner": round(s_runner, 4),
        "s_naive": round(s_naive, 4),
        "s_lower_bound": round(s_lower, 4),
        "speedup_vs_naive": round(s_naive / s_runner, 3),
        "runner_vs_lower_bound": round(s_runner / s_lower, 3),
        "repeats": args.repeats,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
