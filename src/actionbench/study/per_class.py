"""Per class: where one configuration beats another (paired per-class differences with intervals) and which class
pairs each configuration confuses most. Read from the runs' predictions.csv (the final test, every seed).

The per-class intervals are those of the comparison they refine (statistics.seed_aware_difference over seeds and
the class's videos with >= 2 seeds a side, a paired bootstrap over its videos with one), and they are *not*
adjusted for the number of classes: a table of where a difference comes from, not a list of findings.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from actionbench import statistics
from actionbench.study.figures import pyplot, save_figure


def _predictions(output_dir: str) -> list[dict] | None:
    path = Path(output_dir or "") / "predictions.csv"
    if not output_dir or not path.is_file():
        return None
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _outcomes(output_dirs: list[str], videos: list[str]) -> np.ndarray | None:
    rows = [_predictions(d) for d in output_dirs]
    if any(r is None for r in rows):
        return None
    right = [{p["path"]: p["label"] == p["predicted"] for p in r} for r in rows]
    if any(v not in r for r in right for v in videos):
        return None
    return np.array([[r[v] for v in videos] for r in right], dtype=float)


def class_differences(rows: list[dict], comparisons: list[dict]) -> list[dict]:
    """For every comparison (its dataset, a, b): one row per class with both accuracies, the difference and its
    interval (points); sorted by dataset, comparison, then difference (largest gain first)."""
    groups = {(r.get("dataset", ""), r["label"]): r for r in rows}
    out = []
    for c in comparisons:
        a, b = groups.get((c["dataset"], c["a"])), groups.get((c["dataset"], c["b"]))
        first = _predictions(a["output_dirs"][0]) if a else None
        if not (a and b and first):
            continue
        videos = sorted(p["path"] for p in first)
        label = {p["path"]: p["label"] for p in first}
        seeds = None if c["seed_aware"] else 1
        outcome_a, outcome_b = (_outcomes(g["output_dirs"][:seeds], videos) for g in (a, b))
        if outcome_a is None or outcome_b is None:
            continue
        pairs = []
        for name in sorted(set(label.values())):
            idx = [i for i, v in enumerate(videos) if label[v] == name]
            x, y = outcome_a[:, idx], outcome_b[:, idx]
            if c["seed_aware"]:
                d = statistics.seed_aware_difference(x, y)
                difference, low, high = d["estimate"], d["low"], d["high"]
            else:
                d = statistics.paired_bootstrap(x, y)
                difference, low, high = d["difference"], d["low"], d["high"]
            pairs.append({"dataset": c["dataset"], "a": c["a"], "b": c["b"], "class": name, "videos": len(idx),
                          "a_acc": round(100 * x.mean(), 2), "b_acc": round(100 * y.mean(), 2),
                          "difference": round(difference, 2), "ci_low": round(low, 2), "ci_high": round(high, 2),
                          "seed_aware": c["seed_aware"]})
        out += sorted(pairs, key=lambda p: -p["difference"])
    return out


def confused_pairs(rows: list[dict], top: int = 3) -> list[dict]:
    """Per configuration: its `top` most frequent (true class -> predicted class) mistakes over all its seeds, with
    the share of that class's test predictions they take."""
    out = []
    for row in rows:
        runs = [p for d in row.get("output_dirs", []) if (p := _predictions(d))]
        if not runs:
            continue
        mistakes = Counter((p["label"], p["predicted"]) for r in runs for p in r if p["label"] != p["predicted"])
        per_class = Counter(p["label"] for r in runs for p in r)
        for (true, predicted), n in mistakes.most_common(top):
            out.append({"dataset": row.get("dataset", ""), "configuration": row["label"], "true": true,
                        "predicted": predicted, "count": n, "share": round(100 * n / per_class[true], 1),
                        "seeds": len(runs)})
    return out


def plot_class_differences(differences: list[dict], out_dir: Path, per_panel: int = 8) -> list[Path]:
    """A panel per comparison: the classes with the largest gains and losses, each a difference with its interval."""
    plt = pyplot()

    keys = list(dict.fromkeys((d["dataset"], d["a"], d["b"]) for d in differences))
    columns = min(3, len(keys))
    lines = -(-len(keys) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 0.32 * per_panel * lines + 1.2 * lines),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        chosen = sorted((d for d in differences if (d["dataset"], d["a"], d["b"]) == key),
                        key=lambda d: -abs(d["difference"]))[:per_panel]
        chosen.sort(key=lambda d: d["difference"])
        ys = np.arange(len(chosen))
        values = np.array([d["difference"] for d in chosen])
        errors = np.array([[d["difference"] - d["ci_low"] for d in chosen], [d["ci_high"] - d["difference"]
                                                                            for d in chosen]])
        colours = ["#2a7" if d["ci_low"] > 0 else "#c44" if d["ci_high"] < 0 else "#888" for d in chosen]
        ax.barh(ys, values, xerr=errors, color=colours, ecolor="#333", capsize=2, height=0.6)
        ax.set_yticks(ys, [d["class"] for d in chosen], fontsize=7)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"{key[0]}: {key[1]} - {key[2]}", fontsize=8)
        ax.set_xlabel("accuracy difference (points)", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle("Per-class differences (95 % intervals, not adjusted for the number of classes)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_dir, "per_class_differences")
