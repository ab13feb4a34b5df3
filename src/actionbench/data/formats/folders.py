"""A folder of classes: `root/<class>/<video file or frame folder>`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from actionbench.data.decoding.frames import FRAME_SUFFIXES
from actionbench.data.records import MEDIA_SUFFIXES, AnnotationError, Annotations, VideoRecord

if TYPE_CHECKING:
    from actionbench.data.formats import ReadOptions




def read(path: Path, options: ReadOptions) -> Annotations:
    """`root/<class>/<video file or frame folder>`: classes are the sub-folders, sorted."""
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    records = []
    for label, name in enumerate(classes):
        for item in sorted((path / name).iterdir()):
            frames = item.is_dir() and any(f.suffix.lower() in FRAME_SUFFIXES for f in item.iterdir())
            if frames or (item.is_file() and item.suffix.lower() in MEDIA_SUFFIXES):
                records.append(VideoRecord(f"{name}/{item.name}", label, item.stem))
    if not records:
        raise AnnotationError(f"{path}: a folder of classes holds <class>/<video> or <class>/<frame folder>; found "
                              "no video or frame folder one level below its sub-folders")
    return Annotations(records, classes, source=str(path))
