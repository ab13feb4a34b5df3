"""Annotation records: `VideoRecord`, their column store `RecordTable`, and `Annotations` (records + class list).

A record's path may be a video file or a folder of frames (`video_id/00001.jpg ...`): the reader decides.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
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
            return self.take(np.arange(len(self))[index])
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

    def frame_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Every record's frame count (-1 where unknown) and first frame."""
        return self._ints[:, 1].numpy(), self._ints[:, 2].numpy()

    def paths(self) -> list[str]:
        """Every record's path, without making the records (100k records: 0.05 s against 2 s)."""
        return _unpack_all(self._paths, self._path_offsets)

    def take(self, indices: np.ndarray) -> RecordTable:
        """The records at `indices` (non-negative, in that order), copied column by column."""
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        table = RecordTable.__new__(RecordTable)
        table._paths, table._path_offsets = _take_packed(self._paths, self._path_offsets, indices)
        table._ids, table._id_offsets = (None, None) if self._ids is None else \
            _take_packed(self._ids, self._id_offsets, indices)
        table._ints = self._ints[torch.from_numpy(indices)]
        return table

    def with_paths(self, paths: list[str]) -> RecordTable:
        """The same records (ids, labels, frame ranges) at other paths."""
        ids = [_stem(p) for p in self.paths()] if self._ids is None else _unpack_all(self._ids, self._id_offsets)
        labels, frames, firsts = self._ints.numpy().T
        return RecordTable.from_columns(paths, ids, labels, frames, firsts)

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


def _unpack_all(buffer: torch.Tensor, offsets: torch.Tensor) -> list[str]:
    data, bounds = buffer.numpy().tobytes(), offsets.tolist()
    return [data[start:end].decode() for start, end in pairwise(bounds)]


def _take_packed(buffer: torch.Tensor, offsets: torch.Tensor, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The packed texts at `indices`: one gather of their bytes."""
    bounds = offsets.numpy()
    starts, lengths = bounds[indices], bounds[indices + 1] - bounds[indices]
    new = np.zeros(len(indices) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new[1:])
    gather = np.repeat(starts - new[:-1], lengths) + np.arange(new[-1])
    return torch.from_numpy(buffer.numpy()[gather]), torch.from_numpy(new)


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
    """Write records as a list (`path label`, or `path start end label` when they have frame ranges) and
    `classes.txt` beside it; a path with spaces is quoted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = annotations.records
    frames, firsts = table.frame_ranges()
    ranged = bool((frames > 0).any())
    if ranged and not (frames > 0).all():  # one layout per file: a reader could not tell the lines apart
        raise ValueError(f"{path}: some records have frame ranges and some do not; write them to separate lists")

    def line(name: str, label: int, count: int, first: int) -> str:
        name = shlex.quote(name) if any(c.isspace() for c in name) else name
        if ranged:
            return f"{name} {first + 1} {first + count} {label}\n"
        return f"{name} {label}\n"

    path.write_text("".join(map(line, table.paths(), table.labels().tolist(), frames.tolist(), firsts.tolist())))
    (path.parent / "classes.txt").write_text("".join(f"{c}\n" for c in annotations.classes))


def absolute_records(annotations: Annotations, root: Path) -> Annotations:
    """The records with absolute paths (relative ones taken from `root`, itself resolved once; a path's own
    symlinks are kept, so are its video id and name)."""
    base = str(Path(root).resolve())
    paths = [os.path.normpath(os.path.join(base, p)) for p in annotations.records.paths()]
    return replace(annotations, records=annotations.records.with_paths(paths))
