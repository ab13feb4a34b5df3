"""Moments-in-Time CSV files (`path,label,...`, no header) with `moments_categories.txt` beside them."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from actionbench.data.labels import label_index
from actionbench.data.records import AnnotationError, Annotations, VideoRecord

if TYPE_CHECKING:
    from actionbench.data.formats import ReadOptions


def read(path: Path, options: ReadOptions) -> Annotations:
    classes = options.classes
    categories = Path(classes) if isinstance(classes, str | Path) else path.parent / "moments_categories.txt"
    if not categories.is_file():
        raise AnnotationError(f"{path}: Moments-in-Time needs moments_categories.txt beside it (or classes=...)")
    pairs = [line.rsplit(",", 1) for line in categories.read_text().splitlines() if line.strip()]
    class_list = [name for name, _ in sorted(pairs, key=lambda p: int(p[1]))]
    records = []
    with path.open(newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if len(row) < 2:
                raise AnnotationError(f"{path}:{lineno}: expected 'path,label,...', got {row}")
            records.append(VideoRecord(row[0], label_index(row[1], class_list, f"{path}:{lineno}"), Path(row[0]).stem))
    return Annotations(records, class_list, str(path))
