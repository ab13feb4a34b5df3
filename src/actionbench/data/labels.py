"""Labels, resolved in this one place: class lists read beside annotation files, label texts (class indices or
names) -> class indices, and an evaluation split's labels mapped onto a model's classes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from actionbench.data.records import AnnotationError, Annotations, VideoRecord

log = logging.getLogger(__name__)


def read_classes_file(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def classes_beside(path: Path, classes: list[str] | str | Path | None) -> list[str] | None:
    """The class list given (a list or a file), else `classes.txt` beside the annotation file, else None."""
    if isinstance(classes, str | Path):
        return read_classes_file(Path(classes))
    if classes is None and (path.parent / "classes.txt").is_file():
        return read_classes_file(path.parent / "classes.txt")
    return classes


def label_index(label: str, classes: list[str] | None, where: str) -> int:
    """A label text -> its class index: a name in `classes`, or a non-negative index (within `classes`)."""
    if classes is not None and label in classes:
        return classes.index(label)
    if label.lstrip("-").isdigit():
        index = int(label)
        if index < 0:
            raise AnnotationError(f"{where}: label {index} is not a class index (0, 1, ...) nor a class name")
        if classes is not None and not index < len(classes):
            raise AnnotationError(f"{where}: label {index} is outside the {len(classes)} classes")
        return index
    raise AnnotationError(f"{where}: unknown label {label!r}" + (" (not in the class list)" if classes else ""))


def _named_classes(labels, classes: list[str] | None) -> list[str] | None:
    """The class list: the one given, else the sorted names among the labels (None when all are indices)."""
    if classes is None:
        names = {label for label in labels if not label.lstrip("-").isdigit()}
        if names:
            return sorted(names)
    return classes


def _numbered(classes: list[str] | None, largest: int) -> list[str]:
    return classes if classes is not None else [str(i) for i in range(largest + 1)]


def resolve_labels(rows: list[tuple], classes: list[str] | None) -> tuple[list[VideoRecord], list[str]]:
    """rows: (path, label text, where[, num_frames, first_frame]) -> records and the class list."""
    classes = _named_classes([row[1] for row in rows], classes)
    records = [VideoRecord(path, label_index(label, classes, where), Path(path).stem, *extra)
               for path, label, where, *extra in rows]
    return records, _numbered(classes, max((r.label for r in records), default=-1))


def label_column(labels: list[str], classes: list[str] | None,
                 where: Callable[[int], str]) -> tuple[np.ndarray, list[str]]:
    """Label texts -> class indices and the class list, each distinct text checked once (`where(i)` names the
    i-th entry's file and line, for an error)."""
    distinct = set(labels)
    classes = _named_classes(distinct, classes)
    index = {}
    for label in distinct:
        try:
            index[label] = label_index(label, classes, "")
        except AnnotationError:  # again, naming the first line with it
            index[label] = label_index(label, classes, where(labels.index(label)))
    column = np.fromiter(map(index.__getitem__, labels), dtype=np.int64, count=len(labels))
    return column, _numbered(classes, int(column.max()) if len(column) else -1)


def to_model_classes(annotations: Annotations, classes: list[str], where: str) -> Annotations:
    """An evaluation split with its labels as indices into `classes` (the model's): by class name, so that a split
    may hold a subset of the classes in any order."""
    if annotations.classes == classes:
        return annotations
    unnamed = [str(i) for i in range(len(classes))]
    numeric = annotations.classes == [str(i) for i in range(annotations.num_classes)]
    if numeric and annotations.num_classes <= len(classes):
        return Annotations(annotations.records, list(classes), annotations.source)  # indices into the model's
    if classes == unnamed and annotations.num_classes == len(classes):
        log.warning("%s names its classes but the checkpoint does not (convert it with --classes); its class "
                    "order is taken as the classifier's", where)
        return Annotations(annotations.records, list(classes), annotations.source)
    unknown = [c for c in annotations.classes if c not in classes]
    if unknown:
        raise AnnotationError(f"{where}: classes the model does not know: {', '.join(unknown[:5])}"
                              f"{f' ... ({len(unknown)} in all)' if len(unknown) > 5 else ''}; evaluate with the "
                              "class list (classes.txt) the model was trained on")
    index = np.array([classes.index(name) for name in annotations.classes], dtype=np.int64)
    return Annotations(annotations.records.relabelled(index), list(classes), annotations.source)

