"""Dataset annotations read as downloaded, class maps, and the paper's Mini-datasets (`actionbench mini`).

Formats (`format=` or detected): "list" (one video per line, its layout detected from the whole file:
"plain" `path label`; "rawframes" `path total_frames label`, TSN's and MMAction2's rawframe lists; "ibm"
`path start_frame end_frame label`, the paper's code's lists, 1-based and inclusive; declare the layout as the
format when a plain list could be misread, e.g. folders named `clip 0`; quotes keep a path with spaces in one
column), "csv" (header `path,label`), "kinetics" (Kinetics-400/600/700 CSV), "ssv2" (Something-Something-v2
JSON), "mit" (Moments-in-Time CSV), "ucf101" (UCF101 train/test lists), "hmdb51" (HMDB51 split files).
Labels in list and csv files are class indices or class names; names come from a `classes.txt` beside the file
(one per line) or the sorted unique names.
A record's path may be a video file or a folder of frames (`video_id/00001.jpg ...`): the reader decides.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from actionbench.errors import DataError

FORMATS = ("list", "plain", "rawframes", "ibm", "csv", "kinetics", "ssv2", "mit", "ucf101", "hmdb51")
_LIST_LAYOUTS = {"plain": 0, "rawframes": 1, "ibm": 2}  # numeric columns between the path and the label
_HMDB_SPLIT = re.compile(r"^(?P<label>.+)_test_split(?P<split>\d)\.txt$")
_HMDB_SUBSETS = {"train": "1", "test": "2"}


class AnnotationError(DataError):
    """A malformed annotation file; the message names the file and line."""


@dataclass(frozen=True)
class VideoRecord:
    path: str  # relative to the dataset root, or absolute
    label: int
    video_id: str
    num_frames: int | None = None  # known from the annotation (rawframes / ibm lists), else counted by the reader
    first_frame: int = 0  # 0-based index of the record's first frame in the video or folder (ibm lists)


class RecordTable(Sequence):
    """Records as columns: every path in one byte buffer with offsets, labels, frame ranges in integer arrays.

    A list of 700k Python objects took 350 MB in the main process, and each data-loader worker's private memory
    grew by 81 MB after touching a quarter of them once (reference counts dirty the copy-on-write pages); arrays
    have no per-record objects to dirty (docs/performance.md). They are torch tensors so that `share_memory()`
    lets worker processes started by forkserver or spawn receive them by handle instead of by copy. Indexing
    gives a `VideoRecord`, made on demand.
    """

    def __init__(self, records: Iterable[VideoRecord] = ()) -> None:
        records = list(records)
        self._set_columns([r.path for r in records], [r.video_id for r in records],
                          np.array([r.label for r in records], dtype=np.int64),
                          np.array([-1 if r.num_frames is None else r.num_frames for r in records], dtype=np.int64),
                          np.array([r.first_frame for r in records], dtype=np.int64))

    @classmethod
    def from_columns(cls, paths: list[str], video_ids: list[str] | None, labels: np.ndarray, num_frames: np.ndarray,
                     first_frames: np.ndarray) -> RecordTable:
        """The table from its columns (num_frames -1 for unknown; video_ids None: each path's stem, made on
        demand), without a Python object per record."""
        table = cls.__new__(cls)
        table._set_columns(paths, video_ids, labels, num_frames, first_frames)
        return table

    def _set_columns(self, paths, video_ids, labels, num_frames, first_frames) -> None:
        self._paths, self._path_offsets = _pack(paths)
        if video_ids is not None and any(v != _stem(p) for v, p in zip(video_ids, paths, strict=True)):
            self._ids, self._id_offsets = _pack(video_ids)
        else:  # the ids are the paths' stems: no column to keep
            self._ids = self._id_offsets = None
        self._ints = torch.from_numpy(np.stack([labels, num_frames, first_frames], axis=1).astype(np.int64)
                                      if len(paths) else np.zeros((0, 3), np.int64))

    def __len__(self) -> int:
        return int(self._ints.shape[0])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return RecordTable(self[i] for i in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        label, frames, first = self._ints[index].tolist()
        path = _unpack(self._paths, self._path_offsets, index)
        video_id = _stem(path) if self._ids is None else _unpack(self._ids, self._id_offsets, index)
        return VideoRecord(path, label, video_id, None if frames < 0 else frames, first)

    def __iter__(self) -> Iterator[VideoRecord]:
        return (self[i] for i in range(len(self)))

    def __add__(self, other) -> RecordTable:
        return RecordTable([*self, *other])

    def __radd__(self, other) -> RecordTable:  # a list of records + a table
        return RecordTable([*other, *self])

    def labels(self) -> torch.Tensor:
        return self._ints[:, 0]

    def share_memory(self) -> RecordTable:
        for tensor in (self._paths, self._path_offsets, self._ids, self._id_offsets, self._ints):
            if tensor is not None:
                tensor.share_memory_()
        return self


def _pack(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encoded = [t.encode() for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    joined = b"".join(encoded)
    buffer = torch.frombuffer(bytearray(joined), dtype=torch.uint8) if joined else torch.zeros(0, dtype=torch.uint8)
    return buffer, torch.from_numpy(offsets)


def _stem(path: str) -> str:
    """Path(path).stem, three times faster."""
    return os.path.splitext(os.path.basename(path.rstrip("/")))[0]


def _unpack(buffer: torch.Tensor, offsets: torch.Tensor, index: int) -> str:
    start, end = offsets[index].item(), offsets[index + 1].item()
    return buffer[start:end].numpy().tobytes().decode()


@dataclass
class Annotations:
    records: RecordTable  # any sequence of VideoRecord given is stored as a RecordTable
    classes: list[str]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.records, RecordTable):
            self.records = RecordTable(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)


def _read_classes_file(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def _label_index(label: str, classes: list[str] | None, where: str) -> int:
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


def _resolve_labels(rows: list[tuple], classes: list[str] | None) -> tuple[list, list]:
    """rows: (path, label text, where[, num_frames, first_frame]) -> records and the class list."""
    if classes is None:
        names = {row[1] for row in rows if not row[1].lstrip("-").isdigit()}
        if names:
            classes = sorted(names)
    records = [
        VideoRecord(path, _label_index(label, classes, where), Path(path).stem, *extra)
        for path, label, where, *extra in rows
    ]
    if classes is None:
        classes = [str(i) for i in range(max((r.label for r in records), default=-1) + 1)]
    return records, classes


def _classes_beside(path: Path, classes: list[str] | str | Path | None) -> list[str] | None:
    if isinstance(classes, str | Path):
        return _read_classes_file(Path(classes))
    if classes is None and (path.parent / "classes.txt").is_file():
        return _read_classes_file(path.parent / "classes.txt")
    return classes


def _list_lines(path: Path) -> tuple[list[list[str]], list[int] | None]:
    """The columns of every line that is not blank or a comment, and their line numbers (None: the file has no
    quotes or comments, so they are counted again only for an error message; this keeps 700k lines fast)."""
    text = path.read_text()
    if '"' not in text and "'" not in text and "#" not in text:
        return [tokens for tokens in map(str.split, text.splitlines()) if tokens], None
    lines, linenos = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line or line.isspace() or line.lstrip().startswith("#"):
            continue
        try:  # quotes keep a path with spaces in one column: "my clips/a b.mp4" 3
            lines.append(shlex.split(line) if '"' in line or "'" in line else line.split())
        except ValueError as exc:
            raise AnnotationError(f"{path}:{lineno}: {exc} in {line!r}") from None
        linenos.append(lineno)
    return lines, linenos


def _line_of(path: Path, linenos: list[int] | None, entry: int) -> str:
    """'file:line' of the entry-th non-blank line, for an error message."""
    if linenos is None:
        linenos = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if line.split()]
    return f"{path}:{linenos[entry]}"


def _list_layout(lines: list[list[str]]) -> str:
    """The layout every line of the file fits: numeric columns before the label only when all lines have them."""
    if all(len(t) >= 4 and t[-2].isdigit() and t[-3].isdigit() for t in lines):
        return "ibm"
    if all(len(t) >= 3 and t[-2].isdigit() for t in lines):
        return "rawframes"
    return "plain"


def _read_list(path: Path, classes: list[str] | None, layout: str = "list") -> tuple[RecordTable, list[str]]:
    """A list file as columns, no Python object per record (700k lines in about 1.5 s, docs/performance.md)."""
    lines, linenos = _list_lines(path)
    layout = _list_layout(lines) if layout == "list" else layout
    numeric = _LIST_LAYOUTS[layout]
    expected = {"plain": "path label", "rawframes": "path total_frames label",
                "ibm": "path start_frame end_frame label"}[layout]
    for i, tokens in enumerate(lines):
        if len(tokens) < numeric + 2 or (numeric and not all(t.isdigit() for t in tokens[-1 - numeric:-1])):
            raise AnnotationError(f"{_line_of(path, linenos, i)}: expected '{expected}' (the file's layout: "
                                  f"{layout}), got {' '.join(tokens)!r}")
    if all(len(tokens) == numeric + 2 for tokens in lines):
        paths = [tokens[0] for tokens in lines]
    else:  # unquoted spaces in some paths
        paths = [" ".join(tokens[:-1 - numeric]) for tokens in lines]
    frames = np.full(len(lines), -1, dtype=np.int64)
    firsts = np.zeros(len(lines), dtype=np.int64)
    if numeric:
        counts = np.array([[int(t) for t in tokens[-1 - numeric:-1]] for tokens in lines],
                          dtype=np.int64).reshape(len(lines), numeric)
        if layout == "rawframes":
            frames[:] = counts[:, 0]
        else:
            start, end = counts[:, 0], counts[:, 1]
            bad = np.flatnonzero((start < 1) | (end < start))
            if len(bad):
                i = int(bad[0])
                raise AnnotationError(f"{_line_of(path, linenos, i)}: frames {start[i]}-{end[i]}: expected "
                                      f"1 <= start_frame <= end_frame")
            frames[:], firsts[:] = end - start + 1, start - 1
    labels = [tokens[-1] for tokens in lines]
    label_ids, classes = _label_column(path, linenos, labels, classes)
    return RecordTable.from_columns(paths, None, label_ids, frames, firsts), classes


def _label_column(path: Path, linenos: list[int] | None, labels: list[str],
                  classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Label texts (indices or names) -> class indices and the class list, each distinct text checked once."""
    distinct = set(labels)
    if classes is None:
        names = {label for label in distinct if not label.lstrip("-").isdigit()}
        if names:
            classes = sorted(names)
    index = {}
    for label in distinct:
        try:
            index[label] = _label_index(label, classes, "")
        except AnnotationError:  # again, naming the first line with it
            index[label] = _label_index(label, classes, _line_of(path, linenos, labels.index(label)))
    column = np.fromiter(map(index.__getitem__, labels), dtype=np.int64, count=len(labels))
    if classes is None:
        classes = [str(i) for i in range(int(column.max()) + 1 if len(column) else 0)]
    return column, classes


def _read_csv(path: Path, classes: list[str] | None) -> tuple[list, list]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise AnnotationError(f"{path}:1: a CSV annotation needs a header with 'path' and 'label' columns")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not row.get("path") or row.get("label") in (None, ""):
                raise AnnotationError(f"{path}:{lineno}: empty path or label in {row}")
            rows.append((row["path"].strip(), row["label"].strip(), f"{path}:{lineno}", None))
    return _resolve_labels(rows, classes)


def _index_videos(root: Path | None) -> dict[str, str]:
    """stem -> path relative to root, for resolving Kinetics ids whatever the folder layout."""
    if root is None or not root.is_dir():
        return {}
    return {p.stem: str(p.relative_to(root)) for p in root.rglob("*") if p.suffix and p.is_file()}


def _read_kinetics(path: Path, classes: list[str] | None, root: Path | None) -> tuple[list, list]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        needed = {"label", "youtube_id", "time_start", "time_end"}
        if not reader.fieldnames or not needed <= set(reader.fieldnames):
            raise AnnotationError(f"{path}:1: a Kinetics CSV needs the columns {sorted(needed)}")
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
        records.append(VideoRecord(rel, _label_index(row["label"], classes, where), video_id))
    return records, classes


def _read_ssv2(path: Path, classes: list[str] | str | Path | None) -> tuple[list, list]:
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
    return records, class_list


def _read_mit(path: Path, classes: list[str] | str | Path | None) -> tuple[list, list]:
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
            records.append(VideoRecord(row[0], _label_index(row[1], class_list, f"{path}:{lineno}"), Path(row[0]).stem))
    return records, class_list


def _read_ucf101(path: Path, classes: list[str] | str | Path | None) -> tuple[list, list]:
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
    return records, class_list


def _read_hmdb51(path: Path, subset: str) -> tuple[list, list]:
    """HMDB51's `<class>_test_split<k>.txt` files (`video.avi 1|2|0`: train, test, unused): every class file of
    split k beside `path` is read; `subset` picks train (1) or test (2) videos. Videos are `<class>/<video>`."""
    match = _HMDB_SPLIT.match(path.name)
    if not match:
        raise AnnotationError(f"{path}: HMDB51 split files are named <class>_test_split<k>.txt")
    if subset not in _HMDB_SUBSETS:
        raise AnnotationError(f"{path}: HMDB51 subset must be 'train' or 'test', got {subset!r}")
    files = sorted(path.parent.glob(f"*_test_split{match['split']}.txt"))
    class_list = [_HMDB_SPLIT.match(f.name)["label"] for f in files]
    records = []
    for label, file in enumerate(files):
        for lineno, line in enumerate(file.read_text().splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 2 or tokens[1] not in ("0", "1", "2"):
                raise AnnotationError(f"{file}:{lineno}: expected 'video.avi 0|1|2', got {line!r}")
            if tokens[1] == _HMDB_SUBSETS[subset]:
                records.append(VideoRecord(f"{class_list[label]}/{tokens[0]}", label, Path(tokens[0]).stem))
    return records, class_list


def detect_format(path: Path) -> str:
    """Guess the annotation format from the file's name and first line."""
    name = path.name.lower()
    if name.endswith(".json"):
        return "ssv2"
    if name.startswith(("trainlist", "testlist")):
        return "ucf101"
    if _HMDB_SPLIT.match(path.name):
        return "hmdb51"
    with path.open() as f:
        first = f.readline().strip().lower()
    if name.endswith(".csv"):
        if first.startswith("label,youtube_id"):
            return "kinetics"
        if first.startswith("path,") or ",label" in first:
            return "csv"
        return "mit"
    return "list"


_MEDIA_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".ts", ".mpg", ".flv", ".gif")
_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def _read_class_folders(path: Path) -> tuple[list, list]:
    """`root/<class>/<video file or frame folder>`: classes are the sub-folders, sorted."""
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    records = []
    for label, name in enumerate(classes):
        for item in sorted((path / name).iterdir()):
            frames = item.is_dir() and any(f.suffix.lower() in _FRAME_SUFFIXES for f in item.iterdir())
            if frames or (item.is_file() and item.suffix.lower() in _MEDIA_SUFFIXES):
                records.append(VideoRecord(f"{name}/{item.name}", label, item.stem))
    if not records:
        raise AnnotationError(f"{path}: a folder of classes holds <class>/<video> or <class>/<frame folder>; found "
                              "no video or frame folder one level below its sub-folders")
    return records, classes


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


def load_annotations(path: str | Path, format: str | None = None, *, root: str | Path | None = None,
                     classes: list[str] | str | Path | None = None, subset: str = "train") -> Annotations:
    """Read an annotation file as downloaded, or a folder of classes; `format` is detected when not given.

    `subset` ("train" | "test") matters only for HMDB51, whose split files list both.
    """
    path = Path(path)
    if path.is_dir():
        records, class_list = _read_class_folders(path)
        return Annotations(records, class_list, source=str(path))
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist")
    format = format or detect_format(path)
    root_path = Path(root) if root else None
    if format in ("list", *_LIST_LAYOUTS):
        records, class_list = _read_list(path, _classes_beside(path, classes), format)
    elif format == "csv":
        records, class_list = _read_csv(path, _classes_beside(path, classes))
    elif format == "kinetics":
        records, class_list = _read_kinetics(path, _classes_beside(path, classes), root_path)
    elif format == "ssv2":
        records, class_list = _read_ssv2(path, classes)
    elif format == "mit":
        records, class_list = _read_mit(path, classes)
    elif format == "ucf101":
        records, class_list = _read_ucf101(path, classes)
    elif format == "hmdb51":
        records, class_list = _read_hmdb51(path, subset)
    else:
        raise DataError(f"unknown annotation format {format!r}; choose one of {', '.join(FORMATS)}")
    return Annotations(records, list(class_list), source=str(path))


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


def write_list(annotations: Annotations, path: str | Path) -> None:
    """Write records as a list (`path label`; with their frame ranges as `path start end label` when they have
    them) and `classes.txt` beside it; a path with spaces is quoted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ranged = any(r.num_frames for r in annotations.records)

    def line(r: VideoRecord) -> str:
        name = shlex.quote(r.path) if any(c.isspace() for c in r.path) else r.path
        if ranged and r.num_frames:
            return f"{name} {r.first_frame + 1} {r.first_frame + r.num_frames} {r.label}\n"
        return f"{name} {r.label}\n"

    path.write_text("".join(line(r) for r in annotations.records))
    (path.parent / "classes.txt").write_text("".join(f"{c}\n" for c in annotations.classes))


def absolute_records(annotations: Annotations, root: Path) -> Annotations:
    """The records with absolute paths (relative ones taken from `root`)."""
    return replace(annotations, records=[replace(r, path=str((root / r.path).resolve())) for r in annotations.records])


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("annotations", help="training annotations, any supported format, or a folder of classes")
    parser.add_argument("--root", help="folder the annotation paths are relative to (default: the file's folder)")
    parser.add_argument("--val", help="validation annotations, subset with the same classes")
    parser.add_argument("--format", choices=FORMATS, help="annotation format (detected when omitted)")
    parser.add_argument("--fraction", type=float, default=0.5, help="fraction of the classes kept (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the class choice (default 0)")
    parser.add_argument("--out", required=True, help="output folder: train.txt, val.txt, classes.txt")


def _source_root(annotations: str, root: str | None) -> Path:
    return Path(root) if root else (Path(annotations) if Path(annotations).is_dir() else Path(annotations).parent)


def run(args: argparse.Namespace) -> int:
    train = load_annotations(args.annotations, args.format, root=args.root)
    mini, chosen = make_mini(train, args.fraction, args.seed)
    out = Path(args.out)
    # absolute paths: the lists work from their new folder without a data.root
    write_list(absolute_records(mini, _source_root(args.annotations, args.root)), out / "train.txt")
    if args.val:
        val = load_annotations(args.val, args.format, root=args.root)
        if val.classes != train.classes:
            raise AnnotationError(f"{args.val} has another class list than {args.annotations}")
        write_list(absolute_records(make_mini(val, chosen=chosen)[0], _source_root(args.val, args.root)),
                   out / "val.txt")
    print(f"kept {len(chosen)} of {train.num_classes} classes (seed {args.seed}), {len(mini)} training videos -> "
          f"{out} (absolute video paths)")
    return 0
