"""Splits: what a run trains and evaluates on. A training split, an evaluation split with its labels as the model's
classes (data/labels.py), a seeded hold-out of a folder of classes, and the paper's Mini-datasets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from actionbench.config import ConfigError
from actionbench.data.formats import load_annotations
from actionbench.data.labels import to_model_classes
from actionbench.data.records import Annotations


def data_root(root: str | None, list_file: str | Path) -> Path:
    """The folder a list's paths are relative to: `root` when given, else the folder of classes itself or the
    annotation file's folder."""
    if root:
        return Path(root)
    return Path(list_file) if Path(list_file).is_dir() else Path(list_file).parent


def dataset_name(list_file: str | Path) -> str:
    """What reports call a dataset given no name: a folder of classes by its own name, a list by its folder's."""
    path = Path(list_file)
    return path.name if path.is_dir() else path.parent.name


def load_split(list_file: str | Path, *, format: str | None = None, root: str | None = None,
               classes: list[str] | None = None, train_list: str | Path = "", val_list: str | Path = "",
               val_fraction: float = 0.0, split_seed: int = 0) -> Annotations:
    """The training split when `classes` is None; otherwise an evaluation split with its labels resolved against
    `classes` (the model's). A folder of classes given as both training and validation data (`train_list` and
    `val_list` the same folder) is split: `val_fraction` of every class held out with `split_seed`."""
    subset = "train" if classes is None else "test"  # HMDB51's split files list both subsets
    ann = load_annotations(list_file, format, root=data_root(root, list_file), subset=subset)
    if Path(list_file).is_dir() and train_list and Path(train_list).resolve() == Path(val_list).resolve():
        if not val_fraction:
            raise ConfigError(f"data.train_list and data.val_list are the same folder ({list_file}): set "
                              "data.val_fraction=0.2 to hold out a seeded fifth of every class for validation")
        ann = holdout_split(ann, val_fraction, split_seed, "train" if classes is None else "val")
    return ann if classes is None else to_model_classes(ann, classes, str(list_file))


def holdout_split(annotations: Annotations, fraction: float, seed: int, part: str) -> Annotations:
    """A seeded, per-class split: `fraction` of every class's videos for "val", the rest for "train"."""
    if not 0 < fraction < 1:
        raise ValueError(f"data.val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    labels = annotations.records.labels().numpy()  # the column: no record object per video and class
    keep = np.zeros(len(labels), dtype=bool)
    for label in range(annotations.num_classes):
        members = np.flatnonzero(labels == label)
        keep[rng.permutation(members)[: round(len(members) * fraction)]] = True
    if part != "val":
        keep = ~keep
    return replace(annotations, records=annotations.records.take(np.flatnonzero(keep)))


# The paper's Mini-datasets (Table 4): classes kept, training and validation videos.
MINI_PRESETS = {"mini-ssv2": (87, 81_000, 12_000), "mini-kinetics": (200, 121_000, 10_000),
                "mini-mit": (200, 100_000, 10_000)}


def choose_classes(num_classes: int, *, count: int | None = None, fraction: float | None = None,
                   seed: int = 0) -> list[int]:
    """A seeded random choice of `count` classes (or `fraction` of them), in their original order."""
    if count is None:
        if fraction is None or not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        count = max(1, round(num_classes * fraction))
    if not 0 < count <= num_classes:
        raise ValueError(f"cannot keep {count} of {num_classes} classes")
    return sorted(np.random.default_rng(seed).choice(num_classes, count, replace=False).tolist())


def make_mini(annotations: Annotations, fraction: float = 0.5, seed: int = 0,
              chosen: list[int] | None = None, *, classes: int | None = None,
              videos: int | None = None) -> tuple[Annotations, list[int]]:
    """The paper's Mini-datasets: a seeded random choice of the classes (`classes` of them, or `fraction`), labels
    re-indexed in original order; with `videos`, at most that many videos, drawn per class in proportion to its
    size (stratified, seeded; a class keeps at least one).

    Returns the subset and the chosen original class indices (pass `chosen` to subset a val split the same way).
    """
    if chosen is None:
        chosen = choose_classes(annotations.num_classes, count=classes, fraction=fraction, seed=seed)
    labels = annotations.records.labels().numpy()
    members = [np.flatnonzero(labels == old) for old in chosen]
    total = sum(len(m) for m in members)
    if videos is not None and videos < total:
        rng = np.random.default_rng([seed, 1])  # another stream than the class choice's
        quotas = _proportional_quotas([len(m) for m in members], videos)
        members = [np.sort(rng.permutation(m)[:q]) for m, q in zip(members, quotas, strict=True)]
    keep = np.sort(np.concatenate(members)) if members else np.zeros(0, np.int64)
    mapping = np.full(annotations.num_classes, -1, dtype=np.int64)
    mapping[chosen] = np.arange(len(chosen))
    table = annotations.records.relabelled(mapping)
    records = table.take(keep) if len(keep) != len(labels) else table
    return Annotations(records, [annotations.classes[i] for i in chosen], annotations.source), chosen


def _proportional_quotas(sizes: list[int], total: int) -> list[int]:
    """Per-class counts summing to `total` (largest remainders), proportional to `sizes`, each at least 1."""
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    exact = sizes_arr * total / sizes_arr.sum()
    quotas = np.maximum(1, np.floor(exact)).astype(np.int64)
    quotas = np.minimum(quotas, sizes_arr.astype(np.int64))
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    i = 0
    while quotas.sum() < total and i < 10 * len(order):
        c = order[i % len(order)]
        if quotas[c] < sizes[c]:
            quotas[c] += 1
        i += 1
    return quotas.tolist()
