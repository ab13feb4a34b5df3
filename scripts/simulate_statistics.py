"""The figures of docs/studies.md: false-claim rate, coverage and power of the seed-aware comparisons, on the
simulated studies of tests/test_statistics.py (the tests assert the thresholds; this prints the numbers).

    python scripts/simulate_statistics.py [--studies 500]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from actionbench import statistics  # noqa: E402
from tests.test_statistics import _false_claim_rate, _simulated_study, _true_accuracy  # noqa: E402


def _rate(effect, seeds, videos, seed_sd, studies, rng, what):
    truth = _true_accuracy(effect, seed_sd, rng) - _true_accuracy(0.0, seed_sd, rng)
    hits = 0
    for _ in range(studies):
        a, b = _simulated_study(rng, [effect, 0.0], seeds, videos, seed_sd)
        r = statistics.seed_aware_difference(a, b)
        hits += (r["low"] <= truth <= r["high"]) if what == "coverage" else (r["p"] < 0.05 and r["estimate"] > 0)
    return truth, hits / studies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=500)
    n = parser.parse_args().studies
    print("| check | setting | rate |\n|---|---|---|")
    for configs, videos, sd in ((4, 500, 0.35), (4, 120, 0.35), (8, 500, 0.35), (4, 500, 0.1)):
        rate = _false_claim_rate(configs, 3, videos, sd, n, seed=videos + configs)
        print(f"| false-claim rate (any adjusted p < 0.05) | {configs} equal configurations x 3 seeds x {videos} "
              f"videos, seed sd {sd} logit | {100 * rate:.1f} % |")
    rng = np.random.default_rng(0)
    old = sum(any(statistics.paired_bootstrap(a, b, resamples=500)["significant"]
                  for a, b in itertools.combinations(_simulated_study(rng, [0.0] * 4, 3, 500, 0.35), 2))
              for _ in range(200)) / 200
    print(f"| false-claim rate, former video-only bootstrap, no adjustment | 4 x 3 seeds x 500 videos, seed sd 0.35 | "
          f"{100 * old:.1f} % |")
    for seeds in (3, 5):
        truth, rate = _rate(0.3, seeds, 500, 0.35, n, rng, "coverage")
        print(f"| coverage of the 95 % difference interval | true difference {truth:.1f} points, {seeds} seeds x 500 "
              f"videos, seed sd 0.35 | {100 * rate:.1f} % |")
    truth, rate = _rate(0.64, 3, 500, 0.1, n, rng, "power")
    print(f"| power | true difference {truth:.1f} points, 3 seeds x 500 videos, seed sd 0.1 | {100 * rate:.1f} % |")


if __name__ == "__main__":
    main()
