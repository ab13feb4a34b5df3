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
    return replace(annotations, records=[annotations.records[i] for i in np.flatnonzero(keep).tolist()])


def make_mini(annotations: Annotations, fraction: float = 0.5, seed: int = 0,
              chosen: list[int] | None = None) -> tuple[Annotations, list[int]]:
    """The paper's Mini-datasets: a seeded random `fraction` of the classes, labels re-indexed in original order.

    Returns the subset and the chosen original class indices (pass `chosen` to subset a val split the same way).
    """
    if chosen is None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        count = max(1, round(annotations.num_classes * fraction))
        chosen = sorted(np.random.default_rng(seed).choice(annotations.num_classes, count, replace=False).tolist())
    new_label = {old: new for new, old in enumerate(chosen)}
    records = [replace(r, label=new_label[r.label]) for r in annotations.records if r.label in new_label]
    return Annotations(records, [annotations.classes[i] for i in chosen], annotations.source), chosen
