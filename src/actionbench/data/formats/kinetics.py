"""Kinetics-400/600/700 CSV files (`label,youtube_id,time_start,time_end,split`); ids are looked up under the
dataset root whatever its folder layout."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from actionbench.data.labels import classes_beside, label_index
from actionbench.data.records import AnnotationError, Annotations, VideoRecord

if TYPE_CHECKING:
    from actionbench.data.formats import ReadOptions

COLUMNS = {"label", "youtube_id", "time_start", "time_end"}  # and `split`, `is_cc` in some releases


def _index_videos(root: Path | None) -> dict[str, str]:
    """stem -> path relative to root, for resolving Kinetics ids whatever the folder layout."""
    if root is None or not root.is_dir():
        return {}
    return {p.stem: str(p.relative_to(root)) for p in root.rglob("*") if p.suffix and p.is_file()}


def read(path: Path, options: ReadOptions) -> Annotations:
    classes, root = classes_beside(path, options.classes), options.root
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not set(reader.fieldnames) >= COLUMNS:
            raise AnnotationError(f"{path}:1: a Kinetics CSV needs the columns {sorted(COLUMNS)}")
        raw = list(enumerate(reader, start=2))
    if classes is None:
        classes = sorted({row["label"] for _, row in raw})
    on_disk = _index_videos(root)
    records = []
    for lineno, row in raw:
        where = f"{path}:{lineno}"
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            raise AnnotationError(f"{where}: time_start/time_end must be numbers, got {row}") from None
        video_id = f"{row['youtube_id']}_{start:06d}_{end:06d}"
        rel = on_disk.get(video_id) or on_disk.get(row["youtube_id"]) or f"{video_id}.mp4"
        records.append(VideoRecord(rel, label_index(row["label"], classes, where), video_id))
    return Annotations(records, classes, str(path))
