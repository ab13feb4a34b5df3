"""Intervals and paired tests on known cases."""

import itertools
import math

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


# --- seed-aware comparisons: checked by simulation and against independent implementations ------------------


def _simulated_study(rng, effects, seeds, videos, seed_sd):
    """0/1 outcomes (seeds, videos) per configuration: video difficulty shared by all, a configuration x video
    interaction, each trained model's own skill (seed_sd on the logit; 0.35 ~ 5 points of accuracy between seeds,
    0.1 ~ 2 points), and per-model per-video noise."""
    difficulty = rng.normal(0, 1.5, videos)
    out = []
    for effect in effects:
        logit = (0.3 + effect + difficulty + rng.normal(0, 0.5, videos) + rng.normal(0, seed_sd, (seeds, 1))
                 + rng.normal(0, 0.7, (seeds, videos)))
        out.append((rng.random((seeds, videos)) < 1 / (1 + np.exp(-logit))).astype(float))
    return out


def _true_accuracy(effect, seed_sd, rng, n=2_000_000):
    spread = np.sqrt(1.5**2 + 0.5**2 + seed_sd**2 + 0.7**2)
    return 100 * float((1 / (1 + np.exp(-(0.3 + effect + rng.normal(0, spread, n))))).mean())


def _false_claim_rate(configs, seeds, videos, seed_sd, studies, seed):
    rng = np.random.default_rng(seed)
    claims = 0
    for _ in range(studies):
        outcomes = _simulated_study(rng, [0.0] * configs, seeds, videos, seed_sd)
        pairs = list(itertools.combinations(outcomes, 2))
        p = [statistics.seed_aware_difference(a, b)["p"] for a, b in pairs]
        claims += any(q < 0.05 for q in statistics.holm(p))
    return claims / studies


@pytest.mark.parametrize("videos, seed_sd", [(500, 0.35), (120, 0.35), (500, 0.1)])
def test_a_null_family_claims_a_difference_in_at_most_5_percent_of_studies(videos, seed_sd):
    rate = _false_claim_rate(4, 3, videos, seed_sd, 500, seed=videos)
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 500), rate  # within Monte-Carlo error (2 sd, 1.9 points)


def test_the_old_video_only_test_claims_differences_between_equal_designs():
    """Why the unit is the configuration: the per-video bootstrap of seed-averaged outcomes (the former report)
    claims a difference between equally good designs in most studies with a per-seed effect."""
    rng = np.random.default_rng(5)
    claims = 0
    for _ in range(100):
        outcomes = _simulated_study(rng, [0.0] * 4, 3, 500, 0.35)
        claims += any(statistics.paired_bootstrap(a, b, resamples=500)["significant"]
                      for a, b in itertools.combinations(outcomes, 2))
    assert claims / 100 > 0.3


@pytest.mark.parametrize("seeds", [3, 5])
def test_the_difference_interval_covers_the_true_difference(seeds):
    rng = np.random.default_rng(seeds)
    truth = _true_accuracy(0.3, 0.35, rng) - _true_accuracy(0.0, 0.35, rng)
    covered = 0
    for _ in range(400):
        a, b = _simulated_study(rng, [0.3, 0.0], seeds, 500, 0.35)
        result = statistics.seed_aware_difference(a, b)
        covered += result["low"] <= truth <= result["high"]
    assert covered / 400 >= 0.93, covered / 400


def test_a_true_10_point_difference_is_found_with_3_seeds_and_500_videos():
    rng = np.random.default_rng(7)
    truth = _true_accuracy(0.64, 0.1, rng) - _true_accuracy(0.0, 0.1, rng)
    assert 9.5 < truth < 10.5
    found = 0
    for _ in range(300):
        a, b = _simulated_study(rng, [0.64, 0.0], 3, 500, 0.1)
        result = statistics.seed_aware_difference(a, b)
        found += result["p"] < 0.05 and result["estimate"] > 0
    assert found / 300 >= 0.8, found / 300


def test_t_distribution_and_holm_equal_scipy_and_statsmodels():
    scipy_stats = pytest.importorskip("scipy.stats")
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    for df in (1.3, 2.0, 4.7, 10.0, 100.0, 1e5):
        for t in (-3.0, -0.5, 0.0, 1.2, 4.0):
            assert statistics.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-9)
        for q in (0.01, 0.3, 0.8, 0.975, 0.9999):
            assert statistics.t_quantile(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-7)
    p = list(np.random.default_rng(0).uniform(0, 0.1, 20)) + [0.5, 1.0]
    np.testing.assert_allclose(statistics.holm(p), multitest.multipletests(p, method="holm")[1], atol=1e-12)


def test_with_no_video_variation_the_difference_is_welchs_t_test():
    """Seeds that get all or none of the videos right: the video term is 0 and the test is Welch's (scipy)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a = np.repeat((rng.random((4, 1)) < 0.7).astype(float), 50, axis=1)
    b = np.repeat((rng.random((3, 1)) < 0.3).astype(float), 50, axis=1)
    a[0], b[0] = 1.0, 0.0  # not all equal
    result = statistics.seed_aware_difference(a, b)
    welch = scipy_stats.ttest_ind(a.mean(1), b.mean(1), equal_var=False)
    assert result["p"] == pytest.approx(welch.pvalue, rel=1e-6)


def test_the_minimum_detectable_difference_is_what_the_test_finds_80_percent_of_the_time():
    scipy_stats = pytest.importorskip("scipy.stats")
    se, df, family = 2.0, 6.0, 3
    mdd = statistics.minimum_detectable_difference(se, df, family)
    critical = scipy_stats.t.ppf(1 - 0.05 / (2 * family), df)
    assert scipy_stats.t.sf(critical - mdd / se, df) == pytest.approx(0.8, abs=1e-6)


def test_seed_aware_intervals_stay_within_what_accuracy_can_be():
    """Three seeds far apart give a t interval wider than the scale (2 df): it is cut to 0-100 (and -100-100)."""
    rng = np.random.default_rng(3)
    spread = np.array([rng.random(40) < p for p in (0.99, 0.6, 0.97)], dtype=float)
    accuracy = statistics.seed_aware_accuracy(spread)
    assert 0 <= accuracy["low"] < accuracy["estimate"] < accuracy["high"] <= 100 and accuracy["high"] == 100
    other = np.array([rng.random(40) < p for p in (0.02, 0.5, 0.03)], dtype=float)
    difference = statistics.seed_aware_difference(spread, other)
    assert -100 <= difference["low"] < difference["estimate"] < difference["high"] <= 100
