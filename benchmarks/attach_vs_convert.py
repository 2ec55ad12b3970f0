"""CBraMod and EEGPT attached vs converted (issue 48): the same braindecode model opened both
ways, `emg_lens.models.attached.zoo.attach_braindecode` (the original's own forward, cuts
written into its attention calls) and `emg_lens.models.from_braindecode` (an emg_lens
encoder), and the same study grid run on each through the study runner's evaluation
(`emg_lens.studies.ablation.evaluate.evaluate_subject`) on the same windows. The converted
model runs the grid as a prefix tree, sharing every common prefix of masked layers layer by
layer; the attached one, which has no layer-by-layer forward, runs one whole forward per
distinct mask sequence.

The grids (one condition per layer, ``individual``, and the baseline):

- ``layers``: every layer x two edge sets, all heads. CBraMod: ``cross_channel`` (between the
  channels of a patch: its spatial heads) and ``time_window(1, 1)`` (neighbouring patches of
  one channel: its temporal heads); EEGPT (within each patch): ``cross_region`` (channels of
  two lobes) and ``within_region(left)``;
- ``heads``: every layer x every head x the first edge set (CBraMod: its spatial heads).

CBraMod's attached model has two attention calls per layer (the spatial call, then the
temporal one, each with half the heads), so attached layer ``a`` is converted layer ``a // 2``,
and the attached head ``h`` of a spatial call is converted head ``h`` (of a temporal call,
``h + nhead / 2``); EEGPT's calls are its layers. An edge set that names no edge of a call
(``cross_channel`` in a temporal call) is no cut there: it evaluates as the baseline, once.

Before timing, the script checks that the two give the same cells: for every attached
condition that cuts something, its converted condition's metrics (accuracy equal, the others
to 1e-4 relative), labels being the converted model's own unmasked predictions. It then times
both in the same rounds (a warm-up, then ``--repeats`` rounds, the order rotated every round)
and prints one JSON line per architecture and grid:

- ``ratio``: attached / converted seconds per round, ``{min, median, max}`` (> 1: the converted
  model is faster);
- ``s_attached``, ``s_converted``: the median seconds of one evaluation of the grid;
- ``conditions``: grid rows (attached, converted); ``cells_checked``: attached cells compared;
  ``max_rel_diff``: the largest relative difference of a metric between the two;
- the sizes: ``windows``, ``batch``, ``channels``, ``samples``, ``layers``, ``heads``,
  ``tokens`` (converted), ``threads``.

Default sizes: braindecode's defaults (the published widths and depths) on a 19-channel 10-20
montage, 4 s at 200 Hz, 16 windows; ``--quick`` runs 2-layer models on 4 windows (a smoke
test of the script, in the test suite). Time it on an idle machine with ``--threads 1``. At
those sizes one EEGPT forward of 4 windows takes about 1.8 s on one thread (552 tokens of 512
dimensions, 8 layers), so its ``layers`` grid takes about 5 minutes with ``--windows 4`` (the
check, a warm-up and 3 rounds of both: 17 conditions, 33 s attached and 20 s converted a
round) and its ``heads`` grid, 65 conditions, several times that.

    python benchmarks/attach_vs_convert.py [--repeats 3] [--windows 16] [--threads 1]
    python benchmarks/attach_vs_convert.py --only cbramod --grids layers
    python benchmarks/attach_vs_convert.py --only eegpt --grids layers --windows 4 --threads 1
    python benchmarks/attach_vs_convert.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from _harness import TEN_TWENTY, rounds, spread
from torch import nn

from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import parse
from emg_lens.models import from_braindecode
from emg_lens.models.attached.zoo import attach_braindecode
from emg_lens.studies import StudySpec, expand_grid
from emg_lens.studies.ablation.evaluate import Subject, evaluate_subject
from emg_lens.studies.ablation.grid import BASELINE, Condition
from emg_lens.user_code import StudyCode

ARCHITECTURES = ("cbramod", "eegpt")
GRIDS = ("layers", "heads")
# Per architecture: an edge set its spatial (EEGPT: every) call sees, and one more.
FIRST_EDGES = {"cbramod": "cross_channel", "eegpt": "cross_region"}
SECOND_EDGES = {"cbramod": "time_window(1, 1)", "eegpt": "within_region(left)"}
QUICK = {  # 2-layer models of a few tokens
    "cbramod": dict(n_layer=2, nhead=4, dim_feedforward=24, emb_dim=6),
    "eegpt": dict(patch_size=4, patch_stride=None, embed_num=2, embed_dim=16, depth=2),
}
QUICK["cbramod"]["channels_kernel_stride_padding_norm"] = ((4, 49, 25, 24, (2, 4)),)
QUICK["eegpt"] |= {"num_heads": 4, "chan_proj_type": "none"}


def _source(arch: str, quick: bool) -> tuple[nn.Module, tuple[int, int]]:
    """A seeded braindecode model (eval mode) and its input shape."""
    import braindecode.models as bd

    # quick: six channels of four lobes and both hemispheres, so that every edge set cuts
    names = [TEN_TWENTY[i] for i in (0, 3, 8, 10, 15, 18)] if quick else TEN_TWENTY
    channels, samples = (6, 400 if arch == "cbramod" else 16) if quick else (19, 800)
    name = {"cbramod": "CBraMod", "eegpt": "EEGPT"}[arch]
    kwargs = QUICK[arch] if quick else {}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(bd, name)(
            n_chans=channels,
            n_times=samples,
            n_outputs=4,
            chs_info=[{"ch_name": n} for n in names],
            **kwargs,
        )
    return model.eval(), (channels, samples)


def _spec(arch: str, grid: str, n_heads: int) -> StudySpec:
    """The grid as a study: ``layers`` (two edge sets, all heads) or ``heads`` (the first on
    each of ``n_heads`` heads)."""
    interventions = [{"name": "first", "edges": FIRST_EDGES[arch]}]
    extra: dict[str, Any] = {}
    if grid == "layers":
        interventions.append({"name": "second", "edges": SECOND_EDGES[arch]})
    else:
        extra["heads"] = [[h] for h in range(n_heads)]
    return StudySpec.from_dict(
        {
            "name": f"{arch}_{grid}",
            "models": "in memory",
            "interventions": interventions,
            "layers": {"modes": ["individual"]},
            **extra,
        }
    )


def _subject(model: Any, X: torch.Tensor, y: np.ndarray) -> Subject:
    empty = np.zeros((0, *X.shape[1:]), np.float32)
    data = SubjectData(
        subject=1,
        modalities={"eeg": X.shape[1]},
        classes=list(range(4)),
        X_train=empty,
        y_train=np.zeros(0, int),
        rep_train=np.zeros(0, int),
        X_test=X.numpy(),
        y_test=y,
        rep_test=np.full(len(X), 2),
    )
    return Subject(model, data)


def _evaluate(spec: StudySpec, subject: Subject, todo: list[Condition], batch: int) -> dict:
    return evaluate_subject(
        spec,
        subject,
        todo,
        batch_size=batch,
        verify=False,
        subject_id=1,
        code=StudyCode(targets={}, digests={}),
    )


def _cuts(model: Any, condition: Condition) -> bool:
    """Whether ``condition`` cuts any edge of the attached model's call."""
    layout = model.layout_of(condition.layer)
    mask = parse(condition.intervention.edges).compile(layout, model.cfg.n_heads)
    if condition.heads is not None:
        mask = mask[list(condition.heads)]
    return bool(mask.any())


def _same_cells(models: dict, grids: dict, cells: dict) -> tuple[int, float]:
    """Every attached cell that cuts something equals its converted cell; returns (cells
    compared, largest relative difference)."""
    attached, grid_a, cells_a = models["attached"], grids["attached"], cells["attached"]
    grid_c, cells_c = grids["converted"], cells["converted"]
    per_layer = attached.cfg.n_layers // models["converted"].cfg.n_layers
    converted = {(c.name, c.layer, c.heads): cells_c[c.key] for c in grid_c}
    compared, worst = 0, 0.0
    for c in grid_a:
        if c.intervention is None or not _cuts(attached, c):
            continue
        layer, heads = c.layer // per_layer, c.heads
        if heads is not None and c.layer % per_layer:  # CBraMod's temporal call: heads + half
            heads = tuple(h + attached.cfg.n_heads for h in heads)
        theirs, ours = converted[(c.name, layer, heads)]["values"], cells_a[c.key]["values"]
        assert ours["accuracy"] == theirs["accuracy"], (c.key, ours, theirs)
        for metric, value in ours.items():
            diff = abs(value - theirs[metric]) / (1e-3 + abs(theirs[metric]))
            assert diff <= 1e-4 or math.isclose(value, theirs[metric], abs_tol=1e-6), (
                c.key,
                metric,
                value,
                theirs[metric],
            )
            worst = max(worst, diff)
        compared += 1
    assert compared > 0, "no attached condition cut anything"
    return compared, worst


def measure(
    arch: str, grids: Sequence[str], *, quick: bool, windows: int, batch: int, **timing: int
) -> list[dict[str, Any]]:
    """Open ``arch`` both ways once, then for each grid check that the cells agree and time
    both evaluations (`_measure_grid`)."""
    source, shape = _source(arch, quick)
    models = {"attached": attach_braindecode(source), "converted": from_braindecode(source)}
    X = torch.randn(windows, *shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        y = models["converted"](X).argmax(-1).numpy()
    subjects = {name: _subject(m, X, y) for name, m in models.items()}
    sizes = {
        "windows": windows,
        "batch": batch,
        "channels": shape[0],
        "samples": shape[1],
        "layers": models["converted"].cfg.n_layers,
        "heads": models["converted"].cfg.n_heads,
        "tokens": models["converted"].layout.n_tokens,
    }
    return [
        {"benchmark": "attach_vs_convert", "architecture": arch, "grid": grid}
        | _measure_grid(
            _spec(arch, grid, models["attached"].cfg.n_heads), subjects, batch, **timing
        )
        | sizes
        | {"threads": torch.get_num_threads(), "repeats": timing["repeats"]}
        for grid in grids
    ]


def _measure_grid(
    spec: StudySpec, subjects: dict[str, Subject], batch: int, *, warmup: int, repeats: int
) -> dict[str, Any]:
    models = {name: subject.model for name, subject in subjects.items()}
    grids = {
        name: [BASELINE, *expand_grid(spec, m.cfg.n_layers, m.cfg.n_heads)]
        for name, m in models.items()
    }
    runs = {name: (lambda n=name: _evaluate(spec, subjects[n], grids[n], batch)) for name in models}
    compared, worst = _same_cells(models, grids, {name: run() for name, run in runs.items()})
    for _ in range(warmup):
        for run in runs.values():
            run()
    times = rounds(runs, repeats)
    return {
        "ratio": spread([a / c for a, c in zip(times["attached"], times["converted"])]),
        "s_attached": round(statistics.median(times["attached"]), 4),
        "s_converted": round(statistics.median(times["converted"]), 4),
        "conditions": {name: len(g) for name, g in grids.items()},
        "cells_checked": compared,
        "max_rel_diff": float(f"{worst:.3g}"),
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models: a smoke test")
    parser.add_argument("--only", nargs="+", choices=ARCHITECTURES, help="these architectures")
    parser.add_argument("--grids", nargs="+", choices=GRIDS, default=list(GRIDS))
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16, help="window batch of the runner")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.windows, args.batch, args.repeats, args.warmup = 4, 4, 1, 0
    results = []
    for arch in args.only or ARCHITECTURES:
        for result in measure(
            arch,
            args.grids,
            quick=args.quick,
            windows=args.windows,
            batch=args.batch,
            warmup=args.warmup,
            repeats=args.repeats,
        ):
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


if __name__ == "__main__":
    main()
