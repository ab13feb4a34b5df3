"""Annotation records: `VideoRecord`, their column store `RecordTable`, and `Annotations` (records + class list).

A record's path may be a video file or a folder of frames (`video_id/00001.jpg ...`): the reader decides.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from actionbench.errors import DataError

# Video files a folder of classes or a list's unquoted path may name (frame folders have no suffix).
MEDIA_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".ts", ".mpg", ".flv", ".gif")


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

    def relabelled(self, mapping: np.ndarray) -> RecordTable:
        """The same records with label l replaced by mapping[l]."""
        table = RecordTable.__new__(RecordTable)
        table._paths, table._path_offsets, table._ids, table._id_offsets = (
            self._paths, self._path_offsets, self._ids, self._id_offsets)
        table._ints = self._ints.clone()
        table._ints[:, 0] = torch.from_numpy(np.asarray(mapping, dtype=np.int64))[self._ints[:, 0]]
        return table

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
