"""Greedy vs learned edge gates: faithfulness against circuit size (issue 25).

Both searches make the same exact decisions (cut a candidate when the metric stays within
``tau`` of its full-to-empty range and no class loses its accuracy); they differ in the order
they try the candidates: ``greedy`` by the verified screen, ``gates`` by learned edge gates
(`emg_lens.discovery.gates`). Per view (the demo preset's trained views of
``screen_vs_exact.py`` and the two-head planted model of seed 3, which no test uses, as
trained and unmasked), each method runs at every ``tau`` of a sweep; a circuit is a point
(share of the family's edges kept, normalised faithfulness). The area under the
faithfulness-versus-size curve through those points and the corners (0, 0) and (1, 1) (MIB's
CPR, `emg_lens.discovery.faithfulness_areas`: higher is better, a smaller circuit at the same
faithfulness; with the area between the curve and 1, MIB's CMD: lower is better) compares the
methods; so do the sizes at ``tau = 0.05``, the classes lost and, on the planted models, which
planted candidates stay.

    python benchmarks/search_methods.py --cache /tmp/bench   # about 35 minutes on one core
    python benchmarks/search_methods.py --quick   # one random-weight tiny view: seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screen_vs_exact import demo_views, planted_views

from emg_lens.discovery import discover, faithfulness_areas, screen
from emg_lens.discovery.planted import ONE_HEAD, TWO_HEADS, recovery

TAUS = (0.02, 0.05, 0.1, 0.2, 0.4)


def areas(points: list[tuple[float, float]]) -> tuple[float, float]:
    """CPR and CMD of faithfulness against the kept share, through (0, 0) and (1, 1)."""
    xs, ys = zip(*[(0.0, 0.0), *points, (1.0, 1.0)])
    return faithfulness_areas(xs, ys)


def quick_view():
    """A random-weight tiny IsoNet on windows labelled with its own predictions."""
    from emg_lens import EncoderConfig
    from emg_lens.models import IsoNet

    model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
    X = model.example_input(64)
    with torch.no_grad():
        y = model(X).argmax(-1)
    return "tiny random", model, (X, y), "logits", None


def compare(name, model, data, return_type, base, taus=TAUS) -> dict:
    verified = screen(model, data, return_type=return_type, base=base).verify(top=10)
    out: dict = {"view": name, "candidates": len(verified.family)}
    for method in ("greedy", "gates"):
        points, seconds, lost = [], [], {}
        for tau in taus:
            started = time.perf_counter()
            found = discover(model, data, tau=tau, screened=verified, method=method)
            seconds.append(time.perf_counter() - started)
            points.append((found.n_kept_edges / found.n_edges, found.faithfulness))
            lost[tau] = found.classes_lost
            if tau == 0.05:
                out[f"{method}_kept_at_0.05"] = found.n_kept
                out[f"{method}_edges_at_0.05"] = found.n_kept_edges / found.n_edges
                if name.startswith("planted"):
                    planted = ONE_HEAD if "one head" in name else TWO_HEADS
                    out[f"{method}_recovery"] = recovery(found, planted)
        out[f"{method}_auc"], out[f"{method}_cmd"] = areas(points)
        out[f"{method}_points"] = [(tau, *point) for tau, point in zip(taus, points)]
        out[f"{method}_seconds_median"] = statistics.median(seconds)
        out[f"{method}_classes_lost"] = {str(t): v for t, v in lost.items() if v}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, help="keep (and reuse) the trained models here")
    p.add_argument("--quick", action="store_true", help="one random-weight tiny view")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        results = [compare(*quick_view(), taus=(0.05, 0.2))]
    else:
        root = args.cache or Path("search_methods_models")
        views = [*demo_views(root), *planted_views(root, TWO_HEADS, "two heads")]
        results = [compare(*view) for view in views]
    wins = sum(r["gates_auc"] > r["greedy_auc"] for r in results)
    out = {
        "benchmark": "search_methods",
        "taus": [p[0] for p in results[0]["greedy_points"]],
        "views": results,
        "greedy_auc_median": statistics.median(r["greedy_auc"] for r in results),
        "gates_auc_median": statistics.median(r["gates_auc"] for r in results),
        "greedy_cmd_median": statistics.median(r["greedy_cmd"] for r in results),
        "gates_cmd_median": statistics.median(r["gates_cmd"] for r in results),
        "gates_better_views": wins,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
