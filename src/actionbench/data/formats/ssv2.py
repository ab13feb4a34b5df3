"""Something-Something-v2 JSON lists (`[{"id", "template", ...}]`) with `labels.json` beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from actionbench.data.records import AnnotationError, Annotations, VideoRecord

if TYPE_CHECKING:
    from actionbench.data.formats import ReadOptions


def read(path: Path, options: ReadOptions) -> Annotations:
    classes = options.classes
    labels_file = Path(classes) if isinstance(classes, str | Path) else path.parent / "labels.json"
    if not labels_file.is_file():
        raise AnnotationError(f"{path}: Something-Something-v2 needs labels.json beside it (or classes=...)")
    mapping = json.loads(labels_file.read_text())
    class_list = [name for name, _ in sorted(mapping.items(), key=lambda kv: int(kv[1]))]
    entries = json.loads(path.read_text())
    records = []
    for i, entry in enumerate(entries):
        where = f"{path}: entry {i} (id {entry.get('id')})"
        if "template" not in entry or "id" not in entry:
            raise AnnotationError(f"{where}: expected 'id' and 'template' (the unlabelled test set has no labels)")
        name = entry["template"].replace("[", "").replace("]", "")
        if name not in mapping:
            raise AnnotationError(f"{where}: label {name!r} is not in {labels_file}")
        records.append(VideoRecord(f"{entry['id']}.webm", int(mapping[name]), str(entry["id"])))
    return Annotations(records, class_list, str(path))
