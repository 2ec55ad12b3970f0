"""Why a keep claim exactly on its margin holds more often than its 5 % (docs/trust.md).

The calibration (`calibration.py`) finds a keep claim whose every subject truly changes by
−5 % ± 2 (its margin) holding in 5.3–8.0 % of the draws where TOST promises at most 5 %. This
script measures the cause on the same design (`_designs.claim_counts`): each subject's Δ%
is a ratio of window counts, whose flips lean left (a long tail of large losses), and a
one-sided t-test against the lower margin rejects too often when the values lean left (the t
statistic then leans right). Per study size it prints, over ``--draws`` studies, the share in
which the lower one-sided test of TOST rejects (the claim's lower bound clears −5 %): by
Student's t (what `emg_lens.stats.compare.tost` computes) and by Johnson's (1978)
skewness-corrected t (``x̄ − μ0 + m3 / (6 s² n) + m3 (x̄ − μ0)² / (3 s⁴)`` over ``s / √n``),
with the pooled skewness of the per-subject Δ%; then one JSON line.

    python benchmarks/keep_margin_skew.py               # 3,000 studies per size (~4 min)
    python benchmarks/keep_margin_skew.py --quick       # a few, as the test suite runs it
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import scipy.stats as sps
from _designs import claim_counts, subject_changes

MARGIN = 5.0  # % of baseline: the claim's margin and the design's true change
SIZES = (3, 5, 8, 12, 20)


def johnson_t(x: np.ndarray, mu0: float) -> float:
    """Johnson's (1978) skewness-corrected t statistic of ``x``'s mean against ``mu0``."""
    n, mean, s2 = len(x), x.mean(), x.var(ddof=1)
    m3 = ((x - mean) ** 3).mean()
    shift = mean - mu0
    return float((shift + m3 / (6 * s2 * n) + m3 * shift**2 / (3 * s2**2)) / np.sqrt(s2 / n))


def subject_deltas(n: int, rng: np.random.Generator) -> np.ndarray:
    """One study's per-subject Δ% (cut against baseline, each over its 200 test windows) on
    the calibration's "on the margin" design."""
    rows = claim_counts(subject_changes("on the margin", n, rng), rng)
    hits = {
        name: np.array([r["class_correct"][0] for r in rows if r["key"] == name], float)
        for name in ("baseline", "cut")
    }
    return 100 * (hits["cut"] - hits["baseline"]) / hits["baseline"]


def measure(n: int, draws: int, seed: int = 11) -> dict:
    """The lower-margin test's rejection share by Student's and Johnson's t over ``draws``
    studies of ``n`` subjects, and the pooled skewness of their per-subject Δ%."""
    rng = np.random.default_rng([n, seed])
    critical = sps.t.ppf(0.95, n - 1)
    student = johnson = 0
    pooled = []
    for _ in range(draws):
        d = subject_deltas(n, rng)
        pooled.append(d)
        student += (d.mean() + MARGIN) / (d.std(ddof=1) / np.sqrt(n)) > critical
        johnson += johnson_t(d, -MARGIN) > critical
    return {
        "subjects": n,
        "draws": draws,
        "student_t": student / draws,
        "johnson_t": johnson / draws,
        "skewness": float(sps.skew(np.concatenate(pooled))),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="40 studies of 3 and 5 subjects")
    args = parser.parse_args(argv)
    sizes, draws = ((3, 5), 40) if args.quick else (SIZES, args.draws)
    rows = [measure(n, draws) for n in sizes]
    for row in rows:
        print(
            f"# {row['subjects']:>2} subjects: Student's t {row['student_t']:.3f}, "
            f"Johnson's t {row['johnson_t']:.3f} (promised 0.05); "
            f"skewness of Δ% {row['skewness']:+.2f}"
        )
    result = {"benchmark": "keep_margin_skew", "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
