"""A study's runs grouped over seeds, and every pair of groups compared on the same test videos.

A group is one configuration of a study (its `run` name without the seed) or, for results without one, one
(dataset, model, frames, temporal pooling, sampling). Its accuracy is the mean over its seeds, with their standard
deviation and values, and a 95 % interval over the test videos (the run's own for one seed; for several, the
bootstrap of the per-video mean over seeds). Two groups of a dataset are compared video by video on the videos both
predicted (`predictions.csv` of each run): the difference of their video top-1 with its paired bootstrap interval
(significant when it excludes 0) and McNemar's exact test (the largest p over the seeds they share).
"""

from __future__ import annotations

import csv
import itertools
import statistics as stats
from pathlib import Path

import numpy as np

from actionbench import statistics

METRICS = ("clip_top1", "video_top1", "video_top5", "mean_class_acc")
_PER_RUN = ("seed", "output_dir", "train_seconds", "train_clips_per_s")


def group_key(result: dict) -> tuple:
    return (result.get("dataset", ""), result.get("run") or (result["model"], result.get("frames"),
                                                             result.get("temporal_pooling"), result.get("sampling")))


def label_of(result: dict) -> str:
    return str(result.get("run") or result["model"]).split("/")[-1]


def video_outcomes(result: dict) -> dict[str, bool] | None:
    """video -> whether the run's final test got it right (None without a predictions.csv). A video is its path as
    the annotation gives it (relative to the data root): ids from file names repeat across class folders
    (`<class>/v0.mp4`), paths do not."""
    path = Path(result.get("output_dir") or "") / "predictions.csv"
    if not result.get("output_dir") or not path.is_file():
        return None
    with path.open(newline="") as f:
        return {row["path"]: row["label"] == row["predicted"] for row in csv.DictReader(f)}


def _aligned(runs: list[dict], videos: list[str] | None = None) -> tuple[np.ndarray, list[str]] | None:
    """(runs, videos) 0/1 outcomes on the videos every run predicted (or `videos`)."""
    outcomes = [video_outcomes(r) for r in runs]
    if any(o is None for o in outcomes):
        return None
    common = videos or sorted(set.intersection(*(set(o) for o in outcomes)))
    return np.array([[o[v] for v in common] for o in outcomes], dtype=float), common


def group_results(results: list[dict]) -> list[dict]:
    """One row per group: the first run's description, the metrics' mean over seeds, their std and values, and
    the video top-1 interval (`video_top1_ci`)."""
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault(group_key(result), []).append(result)
    rows = []
    for runs in groups.values():
        row = {k: v for k, v in runs[0].items() if k not in _PER_RUN and not k.endswith(("_ci", "_wilson"))}
        row.update(label=label_of(runs[0]), runs=len(runs), seeds=[r.get("seed") for r in runs],
                   output_dirs=[r.get("output_dir") for r in runs])
        for metric in (m for m in METRICS if all(m in r for r in runs)):
            values = [float(r[metric]) for r in runs]
            row[metric] = stats.fmean(values)
            row[f"{metric}_std"] = stats.stdev(values) if len(values) > 1 else 0.0
            row[f"{metric}_runs"] = values
        if len(runs) == 1:
            row["video_top1_ci"] = runs[0].get("video_top1_ci")
        else:
            aligned = _aligned(runs)
            row["video_top1_ci"] = list(statistics.bootstrap_interval(aligned[0].mean(axis=0))) if aligned else None
        rows.append(row)
    return rows


def compare_groups(rows: list[dict]) -> list[dict]:
    """Every pair of groups of a dataset, A listed first when its mean is higher."""
    comparisons = []
    for dataset in sorted({r.get("dataset", "") for r in rows}):
        members = sorted((r for r in rows if r.get("dataset", "") == dataset), key=lambda r: -r.get("video_top1", 0))
        for a, b in itertools.combinations(members, 2):
            runs_a = [{"output_dir": d} for d in a["output_dirs"]]
            runs_b = [{"output_dir": d} for d in b["output_dirs"]]
            n = min(len(runs_a), len(runs_b))  # seeds paired in order (the same seeds in a study)
            first = _aligned(runs_a[:1] + runs_b[:1])
            aligned_a = first and _aligned(runs_a[:n], first[1])
            aligned_b = first and _aligned(runs_b[:n], first[1])
            if not (aligned_a and aligned_b):  # a run without predictions.csv: nothing to pair
                continue
            (outcome_a, videos), (outcome_b, _) = aligned_a, aligned_b
            paired = statistics.paired_bootstrap(outcome_a, outcome_b)
            p = max(statistics.mcnemar_exact(x, y) for x, y in zip(outcome_a, outcome_b, strict=True))
            comparisons.append({"dataset": dataset, "a": a["label"], "b": b["label"],
                                "a_video_top1": round(a["video_top1"], 2), "b_video_top1": round(b["video_top1"], 2),
                                "difference": round(paired["difference"], 2), "ci_low": round(paired["low"], 2),
                                "ci_high": round(paired["high"], 2), "significant": paired["significant"],
                                "mcnemar_p": float(f"{p:.3g}"), "videos": len(videos), "seeds": n})
    return comparisons


def findings(rows: list[dict], comparisons: list[dict]) -> list[str]:
    """Sentences that state only what the intervals support: per dataset, which differences are significant."""
    sentences = []
    for dataset in sorted({r.get("dataset", "") for r in rows}):
        pairs = [c for c in comparisons if c["dataset"] == dataset]
        significant = [c for c in pairs if c["significant"]]
        if not pairs:
            continue
        one_seed = all(c.get("seeds", 1) == 1 for c in pairs)
        caveat = (" With one seed per configuration these compare trained models, not designs: how much another "
                  "seed would change them is unknown.") if one_seed else ""
        if not significant:
            sentences.append(f"{dataset}: no two configurations differ significantly (95 % paired bootstrap over "
                             f"{pairs[0]['videos']} test videos); the table does not rank them.{caveat}")
            continue
        listed = "; ".join(f"{c['a']} > {c['b']} by {c['difference']:.1f} points [{c['ci_low']:.1f}, "
                           f"{c['ci_high']:.1f}]" for c in significant)
        rest = len(pairs) - len(significant)
        sentences.append(f"{dataset}: significant differences (95 % paired bootstrap): {listed}"
                         + (f"; the other {rest} pair(s) do not differ significantly." if rest else ".") + caveat)
    return sentences
