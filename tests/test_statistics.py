"""Intervals and paired tests on known cases."""

import numpy as np
import pytest

from actionbench import statistics


def test_bootstrap_interval_of_40_of_80_matches_the_analytic_one():
    correct = np.array([1] * 40 + [0] * 40)
    low, high = statistics.bootstrap_interval(correct)
    normal = 1.959964 * (0.25 / 80) ** 0.5 * 100  # the normal approximation: 50 +- 10.96
    assert low == pytest.approx(50 - normal, abs=1.0) and high == pytest.approx(50 + normal, abs=1.0)
    wilson = statistics.wilson_interval(40, 80)
    assert wilson[0] == pytest.approx(39.30, abs=0.01) and wilson[1] == pytest.approx(60.70, abs=0.01)
    assert statistics.bootstrap_interval(correct) == (low, high)  # a fixed seed: the same interval every time


def test_paired_tests_find_no_difference_between_identical_predictions_and_one_for_a_better_set():
    rng = np.random.default_rng(1)
    a = rng.random(200) < 0.6
    same = statistics.paired_bootstrap(a, a)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0, "significant": False}
    assert statistics.mcnemar_exact(a, a) == 1.0
    better = a | (rng.random(200) < 0.5)  # right wherever a is, and on half of the rest
    result = statistics.paired_bootstrap(better, a)
    assert result["significant"] and result["low"] > 0
    assert statistics.mcnemar_exact(better, a) < 1e-6
    noisy = rng.random(200) < 0.6  # another model of the same accuracy
    assert not statistics.paired_bootstrap(noisy, a)["significant"]


def test_mcnemar_exact_on_a_small_table():
    a = np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)
    b = np.array([0, 0, 0, 0, 1, 1, 0, 0], bool)
    # discordant pairs: 4 (a only) vs 1 (b only): two-sided binomial p = 2 * P(X <= 1 | n=5, 1/2) = 0.375
    assert statistics.mcnemar_exact(a, b) == pytest.approx(0.375)


def test_mean_class_interval_contains_the_mean_class_accuracy():
    labels = np.array([0] * 30 + [1] * 10)
    correct = np.array([1] * 27 + [0] * 3 + [1] * 5 + [0] * 5, float)
    low, high = statistics.mean_class_interval(labels, correct, 2)
    assert low < 70 < high  # (90 % + 50 %) / 2
