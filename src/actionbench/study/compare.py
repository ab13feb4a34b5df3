"""A study's runs grouped over seeds, and the configurations of each dataset compared as one family.

A group is one configuration of a study (its `run` name without the seed) or, for results without one, one
(dataset, model, frames, temporal pooling, sampling). Its accuracy is the mean over its seeds, with their standard
deviation and values. The unit of a statement is the configuration over its seeds (statistics.py): with >= 2 seeds
on both sides a difference's interval and test cover the training seeds and the test videos (paired: the same
videos), `seed_aware: true`; with one seed on a side the comparison is between two trained models (a paired bootstrap
over the test videos and McNemar's exact test), `seed_aware: false`, and no finding about designs is stated from it.
Within a dataset the comparisons are one family -- every pair, or each configuration against the study's
`baseline` -- and their p-values are adjusted by Holm's step-down method; `significant` is after adjustment.
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
    the video top-1 interval (`video_top1_ci`: seeds and test videos with >= 2 seeds, the run's own with one)."""
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
            if aligned:
                summary = statistics.seed_aware_accuracy(aligned[0])
                row["video_top1_ci"] = [summary["low"], summary["high"]]
            else:
                row["video_top1_ci"] = None
        rows.append(row)
    return rows


def _family(members: list[dict], baseline: str | None) -> list[tuple[dict, dict]]:
    """The pairs a dataset's family holds: every pair (higher mean first), or each configuration vs `baseline`."""
    if baseline is None:
        return list(itertools.combinations(members, 2))
    base = [m for m in members if m["label"] == baseline]
    if not base:
        return []
    return [(m, base[0]) for m in members if m is not base[0]]


def _compare(a: dict, b: dict) -> dict | None:
    """One comparison of two groups on the videos both predicted (None when a run has no predictions.csv)."""
    first = _aligned([{"output_dir": a["output_dirs"][0]}, {"output_dir": b["output_dirs"][0]}])
    if not first:
        return None
    videos = first[1]
    one_seed = min(len(a["output_dirs"]), len(b["output_dirs"])) == 1  # then each side's first seed only
    aligned_a = _aligned([{"output_dir": d} for d in a["output_dirs"][:1 if one_seed else None]], videos)
    aligned_b = _aligned([{"output_dir": d} for d in b["output_dirs"][:1 if one_seed else None]], videos)
    if not (aligned_a and aligned_b):
        return None
    outcome_a, outcome_b = aligned_a[0], aligned_b[0]
    row = {"a": a["label"], "b": b["label"], "a_video_top1": round(a["video_top1"], 2),
           "b_video_top1": round(b["video_top1"], 2), "videos": len(videos), "seeds_a": len(outcome_a),
           "seeds_b": len(outcome_b)}
    if not one_seed:
        result = statistics.seed_aware_difference(outcome_a, outcome_b)
        row.update(difference=round(result["estimate"], 2), ci_low=round(result["low"], 2),
                   ci_high=round(result["high"], 2), p=result["p"], se=result["se"], df=result["df"],
                   seed_aware=True, method="seeds and videos (t, Welch-Satterthwaite)")
    else:  # two trained models: what another seed would do is unknown
        x, y = outcome_a, outcome_b
        paired = statistics.paired_bootstrap(x, y)
        row.update(difference=round(paired["difference"], 2), ci_low=round(paired["low"], 2),
                   ci_high=round(paired["high"], 2), p=statistics.mcnemar_exact(x[0], y[0]), se=None, df=None,
                   seed_aware=False, method="videos only, one seed (paired bootstrap; McNemar p)")
    return row


def compare_groups(rows: list[dict], baseline: str | None = None, alpha: float = 0.05) -> list[dict]:
    """Each dataset's family of comparisons (every pair, or each vs `baseline`) with raw and Holm-adjusted p,
    `significant` after adjustment, and the dataset's minimum detectable difference (`mdd`, 80 % power)."""
    comparisons = []
    for dataset in sorted({r.get("dataset", "") for r in rows}):
        members = sorted((r for r in rows if r.get("dataset", "") == dataset), key=lambda r: -r.get("video_top1", 0))
        family = [c for a, b in _family(members, baseline) if (c := _compare(a, b))]
        adjusted = statistics.holm([c["p"] for c in family])
        aware = [c for c in family if c["seed_aware"]]
        mdd = (statistics.minimum_detectable_difference(stats.median(c["se"] for c in aware),
                                                        stats.median(c["df"] for c in aware), len(family), alpha)
               if aware else None)
        for c, p_adjusted in zip(family, adjusted, strict=True):
            c.update(dataset=dataset, p=float(f"{c['p']:.3g}"), p_adjusted=float(f"{p_adjusted:.3g}"),
                     significant=bool(p_adjusted < alpha), family=len(family),
                     mdd=None if mdd is None else round(mdd, 2))
            c["se"] = None if c["se"] is None else round(c["se"], 3)
            c["df"] = None if c["df"] is None else round(c["df"], 1)
        comparisons += family
    return comparisons


def findings(rows: list[dict], comparisons: list[dict]) -> list[str]:
    """Sentences that state only what the adjusted, seed-aware tests support, per dataset; comparisons with one
    seed on a side are said to be between trained models, and nothing about designs is stated from them."""
    sentences = []
    for dataset in sorted({r.get("dataset", "") for r in rows}):
        pairs = [c for c in comparisons if c["dataset"] == dataset]
        if not pairs:
            continue
        family = f"{len(pairs)} comparison(s), Holm-adjusted at 5 %, over {pairs[0]['videos']} test videos"
        aware = [c for c in pairs if c["seed_aware"]]
        models = [c for c in pairs if not c["seed_aware"]]
        text = []
        if aware:
            significant = [c for c in aware if c["significant"]]
            seeds = min(min(c["seeds_a"], c["seeds_b"]) for c in aware)
            detectable = (f"this study could see differences of about {aware[0]['mdd']:.1f} points or more "
                          "(80 % power)")
            if not significant:
                text.append(f"the designs are indistinguishable within this study ({family}; >= {seeds} seeds "
                            f"each, intervals over seeds and videos): no difference is significant, and {detectable}"
                            "; the table does not rank them.")
            else:
                listed = "; ".join(f"{c['a']} > {c['b']} by {c['difference']:.1f} points [{c['ci_low']:.1f}, "
                                   f"{c['ci_high']:.1f}], adjusted p {c['p_adjusted']:.2g}" for c in significant)
                rest = len(aware) - len(significant)
                text.append(f"significant differences ({family}; >= {seeds} seeds each, intervals over seeds and "
                            f"videos): {listed}" + (f"; the other {rest} are not significant ({detectable})."
                                                     if rest else "."))
        if models:
            differ = [c for c in models if c["significant"]]
            listed = "; ".join(f"{c['a']} > {c['b']} by {c['difference']:.1f} points" for c in differ)
            text.append(f"{len(models)} comparison(s) have one seed on a side: they compare trained models, not "
                        "designs; how much another seed would change them is unknown, so no finding about designs "
                        "is stated from them" + (f" (the trained models differ: {listed})." if differ else "."))
        sentences.append(f"{dataset}: " + " ".join(text))
    return sentences
