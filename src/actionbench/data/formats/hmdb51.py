"""HMDB51 split files, `<class>_test_split<k>.txt`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from actionbench.data.records import AnnotationError, Annotations, VideoRecord

if TYPE_CHECKING:
    from actionbench.data.formats import ReadOptions

SPLIT_FILE = re.compile(r"^(?P<label>.+)_test_split(?P<split>\d)\.txt$")
_SUBSETS = {"train": "1", "test": "2"}

def read(path: Path, options: ReadOptions) -> Annotations:
    subset = options.subset
    """HMDB51's `<class>_test_split<k>.txt` files (`video.avi 1|2|0`: train, test, unused): every class file of
    split k beside `path` is read; `subset` picks train (1) or test (2) videos. Videos are `<class>/<video>`."""
    match = SPLIT_FILE.match(path.name)
    if not match:
        raise AnnotationError(f"{path}: HMDB51 split files are named <class>_test_split<k>.txt")
    if subset not in _SUBSETS:
        raise AnnotationError(f"{path}: HMDB51 subset must be 'train' or 'test', got {subset!r}")
    files = sorted(path.parent.glob(f"*_test_split{match['split']}.txt"))
    class_list = [SPLIT_FILE.match(f.name)["label"] for f in files]
    records = []
    for label, file in enumerate(files):
        for lineno, line in enumerate(file.read_text().splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 2 or tokens[1] not in ("0", "1", "2"):
                raise AnnotationError(f"{file}:{lineno}: expected 'video.avi 0|1|2', got {line!r}")
            if tokens[1] == _SUBSETS[subset]:
                records.append(VideoRecord(f"{class_list[label]}/{tokens[0]}", label, Path(tokens[0]).stem))
    return Annotations(records, class_list, str(path))
