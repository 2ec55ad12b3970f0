"""Why the keep claims' equivalence test corrects Student's t for skewness (docs/trust.md).

A keep claim whose every subject truly changes by −5 % ± 2 (its margin) held in 6.1–8.0 % of
the calibration's draws under Student's TOST, where it promises at most 5 %. The cause: each
subject's Δ% is a ratio of window counts, whose flips lean left (a subject that loses more has
a noisier count: a tail of large losses), and a one-sided t-test against the lower margin
rejects too often on values that lean left. Per study size this script prints, over
``--draws`` studies of that design (`_designs.claim_counts`), the share in which the lower
one-sided test of TOST rejects (the claim's lower bound clears −5 %): by Student's t
(`emg_lens.stats.compare.t_interval`) and by Johnson's (1978) skewness-corrected t in Hall's
(1992) monotone form (`emg_lens.stats.compare.skew_t_interval`), with the skewness estimated
from the few subjects' values alone, and with the interval spanning that estimate's and their
measurement's (each subject's trials: `emg_lens.studies.ablation.verdicts.subject_changes`),
which is what a claim computes; with the pooled skewness of the per-subject Δ%; then one JSON
line.

    python benchmarks/keep_margin_skew.py               # 3,000 studies per size (~2 min)
    python benchmarks/keep_margin_skew.py --quick       # a few, as the test suite runs it
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import scipy.stats as sps
from _designs import claim_counts, subject_changes

from emg_lens.stats.compare import skew_t_interval, t_interval
from emg_lens.studies.ablation.verdicts import subject_changes as own_changes

MARGIN = 5.0  # % of baseline: the claim's margin and the design's true change
SIZES = (3, 5, 8, 12, 20)


def subject_deltas(n: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One study's per-subject Δ% (cut against baseline, each over its 20 test trials of 10
    windows) on the calibration's "on the margin" design, and their measurement's third
    cumulant (the mean of each subject's, from its trials)."""
    rows = pd.DataFrame(claim_counts(subject_changes("on the margin", n, rng), rng))
    own = own_changes(rows[rows.key == "baseline"], rows[rows.key == "cut"], [0])
    return own["delta_pct"].to_numpy(float), float(own["k3"].mean())


def measure(n: int, draws: int, seed: int = 11) -> dict:
    """The lower-margin test's rejection share by Student's t and the skew-corrected t (the
    sample's skewness; the measurement's) over ``draws`` studies of ``n`` subjects, and the
    pooled skewness of their per-subject Δ%."""
    rng = np.random.default_rng([n, seed])
    student = sample = measured = 0
    pooled = []
    for _ in range(draws):
        d, third = subject_deltas(n, rng)
        pooled.append(d)
        student += t_interval(d, 0.90)[0] > -MARGIN
        sample += skew_t_interval(d, 0.90)[0] > -MARGIN
        measured += skew_t_interval(d, 0.90, third=third)[0] > -MARGIN
    return {
        "subjects": n,
        "draws": draws,
        "student_t": student / draws,
        "skew_corrected_t": sample / draws,
        "measurement_skew_t": measured / draws,
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
            f"skew-corrected t {row['skew_corrected_t']:.3f} (the sample's skewness), "
            f"{row['measurement_skew_t']:.3f} (both estimates, as a claim; promised 0.05); "
            f"skewness of Δ% {row['skewness']:+.2f}"
        )
    result = {"benchmark": "keep_margin_skew", "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
