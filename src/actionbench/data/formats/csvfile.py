"""CSV with a header naming `path` and `label` columns (more columns are ignored)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from actionbench.data.labels import classes_beside, resolve_labels
from actionbench.data.records import AnnotationError, Annotations

if TYPE_CHECKING:
    from actionbench.data.formats import ReadOptions


def read(path: Path, options: ReadOptions) -> Annotations:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise AnnotationError(f"{path}:1: a CSV annotation needs a header with 'path' and 'label' columns")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not row.get("path") or row.get("label") in (None, ""):
                raise AnnotationError(f"{path}:{lineno}: empty path or label in {row}")
            rows.append((row["path"].strip(), row["label"].strip(), f"{path}:{lineno}", None))
    return Annotations(*resolve_labels(rows, classes_beside(path, options.classes)), source=str(path))
