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
    clean = lambda v: round(100 * v, 10) + 0.0  # noqa: E731 (no -0.0 in reports)
    return {"difference": clean(float(per_video.mean())), "low": clean(low), "high": clean(high),
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
