"""How sure a comparison is: intervals for accuracies and paired tests for differences, over test videos.

Every accuracy here is a mean of per-video outcomes (1 if the video is right, else 0; a class's recall for the mean
class accuracy), so its uncertainty is that of the finite test set: resampling the test videos with replacement
(the bootstrap) shows how much the number would move on another draw of the same kind of videos. Two models tested
on the same videos are compared on the same resamples (a paired bootstrap), which removes the variation both share;
McNemar's exact test asks whether the videos one gets right and the other wrong split unevenly. Fixed seeds: the
same predictions always give the same intervals.
"""

from __future__ import annotations

import math

import numpy as np

RESAMPLES, SEED, LEVEL = 2000, 0, 0.95
METHOD = f"bootstrap over test videos, {RESAMPLES} resamples, seed {SEED}, {LEVEL:.0%} percentile interval"


def _points(fraction: float) -> float:
    """A fraction in percentage points, as reports print it (no -0.0)."""
    return round(100 * fraction, 10) + 0.0


def _bounds(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def _resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_interval(correct: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval (in %) of the mean of per-video outcomes `correct` (0/1)."""
    correct = np.asarray(correct, dtype=np.float64)
    if len(correct) == 0:
        return float("nan"), float("nan")
    means = correct[_resample_indices(len(correct), resamples, seed)].mean(axis=1)
    low, high = _bounds(means, level)
    return 100 * low, 100 * high


def mean_class_interval(labels: np.ndarray, correct: np.ndarray, num_classes: int, resamples: int = RESAMPLES,
                        seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Interval (in %) of the mean per-class accuracy, resampling videos (classes absent from a resample skipped)."""
    labels, correct = np.asarray(labels), np.asarray(correct, dtype=np.float64)
    if len(labels) == 0:
        return float("nan"), float("nan")
    values = []
    for idx in _resample_indices(len(labels), resamples, seed):
        hits = np.bincount(labels[idx], weights=correct[idx], minlength=num_classes)
        counts = np.bincount(labels[idx], minlength=num_classes)
        present = counts > 0
        values.append((hits[present] / counts[present]).mean())
    low, high = _bounds(np.array(values), level)
    return 100 * low, 100 * high


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval (in %) of a proportion: the analytic interval for a top-1 accuracy."""
    if n == 0:
        return float("nan"), float("nan")
    z = _normal_quantile(1 - (1 - level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * (centre - half), 100 * (centre + half)


def _normal_quantile(q: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if q < 0.02425:
        r = math.sqrt(-2 * math.log(q))
        return (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / \
            ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1)
    if q > 1 - 0.02425:
        return -_normal_quantile(1 - q)
    r = (q - 0.5) ** 2
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * (q - 0.5) / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> dict:
    """Accuracy difference A - B (in points) on the same videos and its paired bootstrap interval.

    `correct_a`/`correct_b`: (videos,) outcomes, or (seeds, videos) for runs repeated over seeds (the difference is
    then the mean over seeds, resampled by videos).
    """
    a, b = np.atleast_2d(np.asarray(correct_a, float)), np.atleast_2d(np.asarray(correct_b, float))
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same videos (and seeds): {a.shape} vs {b.shape}")
    per_video = (a - b).mean(axis=0)  # over seeds
    samples = per_video[_resample_indices(len(per_video), resamples, seed)].mean(axis=1)
    low, high = _bounds(samples, level)
    return {"difference": _points(float(per_video.mean())), "low": _points(low), "high": _points(high),
            "significant": bool(low > 0 or high < 0)}


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: the videos only A gets right vs the videos only B gets right."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


# --- Seed-aware comparisons of configurations (a configuration = a design trained with several seeds) ---------
#
# A configuration c trained with seed s gets video v right or wrong: y[c, s, v]. Its accuracy is a statement about
# the design when it covers both sources of variation: the training seeds (each trained model has its own skill)
# and the test videos (another draw of videos of the same kind). For the mean accuracy over seeds, Abar_c:
#   Var(Abar_a - Abar_b) = Var(A_a,s)/n_a + Var(A_b,s)/n_b + Var_v(p_av - p_bv)/V
# the per-seed accuracies' variance over seeds (given the videos; estimated by their sample variance) and, for the
# videos, the variance over videos of the paired per-video difference of expected outcomes, estimated by the
# sample variance of the seed-averaged difference minus its within-video (seed) part. Paired: a video's difficulty,
# shared by both configurations, cancels. The statistic is referred to Student's t with Welch-Satterthwaite degrees
# of freedom (a handful of seeds: few degrees of freedom, wide intervals, as they should be). A bootstrap over 3
# seeds cannot do that (it sees at most 3 values and under-covers); the simulations in tests/test_statistics.py
# check the false-claim rate, coverage and power of this one.


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 3e-16:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function with `df` (real, > 0) degrees of freedom."""
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2))
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(q: float, df: float) -> float:
    """The inverse of `t_cdf` (bisection to 1e-12 around the normal quantile)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level {q} outside (0, 1)")
    low, high = -1.0, 1.0
    while t_cdf(low, df) > q:
        low *= 2
    while t_cdf(high, df) < q:
        high *= 2
    while high - low > 1e-12 * max(1.0, abs(high)):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if t_cdf(mid, df) < q else (low, mid)
    return 0.5 * (low + high)


def _seed_term(x: np.ndarray) -> tuple[float, int]:
    """The seed part of a configuration's mean-accuracy variance (fractions^2) and its degrees of freedom."""
    n = x.shape[0]
    return float(x.mean(axis=1).var(ddof=1)) / n, n - 1


def _video_term(per_video: np.ndarray, within: np.ndarray) -> float:
    """The test-video part: the variance over videos of the expected per-video outcome (or paired difference),
    the within-video seed variance removed (never below 0), over the number of videos."""
    v = per_video.shape[0]
    return max(0.0, float(per_video.var(ddof=1) - within.mean())) / v


def _t_summary(estimate: float, terms: list[tuple[float, float]], level: float,
               bounds: tuple[float, float]) -> dict:
    """Estimate, standard error, Welch-Satterthwaite df, t interval and two-sided p (for 0), in points. The interval
    is cut to `bounds`, the values the quantity can take (with 3 seeds a t interval can reach past 100 %)."""
    variance = sum(t for t, _ in terms)
    se = math.sqrt(variance)
    denominator = sum(t * t / df for t, df in terms if df > 0 and t > 0)
    df = variance * variance / denominator if denominator > 0 else math.inf
    if se == 0:
        p, half = (1.0 if estimate == 0 else 0.0), 0.0
    else:
        p = min(1.0, 2 * (1 - t_cdf(abs(estimate) / se, df)))
        half = t_quantile(1 - (1 - level) / 2, df) * se
    return {"estimate": _points(estimate), "se": _points(se), "df": df,
            "low": _points(max(bounds[0], estimate - half)), "high": _points(min(bounds[1], estimate + half)), "p": p}


def seed_aware_accuracy(correct: np.ndarray, level: float = LEVEL) -> dict:
    """A configuration's mean accuracy over its seeds, with a t interval covering seeds and test videos.

    `correct`: (seeds, videos) 0/1 outcomes, at least 2 seeds (with one, the seed variation is unknown).
    """
    x = np.asarray(correct, float)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"seed-aware accuracy needs >= 2 seeds x videos, got shape {x.shape}")
    n = x.shape[0]
    seed = _seed_term(x)
    video = (_video_term(x.mean(axis=0), x.var(axis=0, ddof=1) / n), x.shape[1] - 1)
    return _t_summary(float(x.mean()), [seed, video], level, (0.0, 1.0))


def seed_aware_difference(correct_a: np.ndarray, correct_b: np.ndarray, level: float = LEVEL) -> dict:
    """A - B in mean accuracy over each configuration's seeds, tested on the same videos: difference, standard
    error, degrees of freedom, t interval and two-sided p, in points. (seeds, videos) arrays with the same videos;
    the seeds of the two sides are independent trainings (their number may differ), at least 2 each."""
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"paired outcomes need (seeds, videos) on the same videos: {a.shape} vs {b.shape}")
    if min(a.shape[0], b.shape[0]) < 2:
        raise ValueError("a seed-aware difference needs >= 2 seeds on each side")
    per_video = a.mean(axis=0) - b.mean(axis=0)
    within = a.var(axis=0, ddof=1) / a.shape[0] + b.var(axis=0, ddof=1) / b.shape[0]
    terms = [_seed_term(a), _seed_term(b), (_video_term(per_video, within), a.shape[1] - 1)]
    return _t_summary(float(per_video.mean()), terms, level, (-1.0, 1.0))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control under any dependence), in the given order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def minimum_detectable_difference(se: float, df: float, family: int, alpha: float = 1 - LEVEL,
                                  power: float = 0.8) -> float:
    """The smallest true difference (same units as `se`) a two-sided t test at level alpha / family (Holm's first,
    strictest step) finds with probability `power`: (t_{1 - alpha / (2 family)} + t_{power}) * se."""
    return (t_quantile(1 - alpha / (2 * max(1, family)), df) + t_quantile(power, df)) * se
