"""UCF101 `trainlist0k.txt` / `testlist0k.txt` with `classInd.txt` beside them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from actionbench.data.records import AnnotationError, Annotations, VideoRecord

if TYPE_CHECKING:
    from actionbench.data.formats import ReadOptions


def read(path: Path, options: ReadOptions) -> Annotations:
    classes = options.classes
    class_ind = Path(classes) if isinstance(classes, str | Path) else path.parent / "classInd.txt"
    if not class_ind.is_file():
        raise AnnotationError(f"{path}: UCF101 lists need classInd.txt beside them (or classes=...)")
    pairs = [line.split() for line in class_ind.read_text().splitlines() if line.strip()]
    class_list = [name for _, name in sorted(pairs, key=lambda p: int(p[0]))]
    records = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        tokens = line.split()
        where = f"{path}:{lineno}"
        class_name = tokens[0].split("/")[0]
        if class_name not in class_list:
            raise AnnotationError(f"{where}: unknown class folder {class_name!r}")
        label = class_list.index(class_name)
        if len(tokens) > 1 and int(tokens[1]) - 1 != label:
            raise AnnotationError(f"{where}: label {tokens[1]} disagrees with class folder {class_name!r}")
        records.append(VideoRecord(tokens[0], label, Path(tokens[0]).stem))
    return Annotations(records, class_list, str(path))
