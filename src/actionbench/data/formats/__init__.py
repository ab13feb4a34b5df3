"""Annotation files read as downloaded: one reader per format, one signature, chosen from `READERS`.

A reader is `read(path, options) -> Annotations` (`ReadOptions`: the dataset root, a class list or file, the
subset). Formats (`format=` or detected by `detect_format`): "list" (one video per line, its layout detected from
the whole file: "plain" `path label`; "rawframes" `path total_frames label`, TSN's and MMAction2's rawframe lists;
"ibm" `path start_frame end_frame label`, the paper's code's lists, 1-based and inclusive; declare the layout as
the format when a plain list could be misread, e.g. folders named `clip 0`; quotes keep a path with spaces in one
column), "csv" (header `path,label`), "kinetics" (Kinetics-400/600/700 CSV), "ssv2" (Something-Something-v2
JSON), "mit" (Moments-in-Time CSV), "ucf101" (UCF101 train/test lists), "hmdb51" (HMDB51 split files); a folder
is a folder of classes (`root/<class>/<video>`). Labels in list and csv files are class indices or class names;
names come from a `classes.txt` beside the file (one per line) or the sorted unique names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from actionbench.config import FORMAT_NAMES
from actionbench.data.formats import csvfile, folders, hmdb51, kinetics, lists, mit, ssv2, ucf101
from actionbench.data.records import AnnotationError, Annotations
from actionbench.errors import DataError


@dataclass(frozen=True)
class ReadOptions:
    root: Path | None = None  # the folder the file's paths are relative to (Kinetics ids are looked up there)
    classes: list[str] | str | Path | None = None  # the class list, or a file of it (default: the format's own)
    subset: str = "train"  # "train" | "test": HMDB51's split files list both


Reader = Callable[[Path, ReadOptions], Annotations]

READERS: dict[str, Reader] = {
    "list": partial(lists.read, layout="list"),
    "plain": partial(lists.read, layout="plain"),
    "rawframes": partial(lists.read, layout="rawframes"),
    "ibm": partial(lists.read, layout="ibm"),
    "csv": csvfile.read,
    "kinetics": kinetics.read,
    "ssv2": ssv2.read,
    "mit": mit.read,
    "ucf101": ucf101.read,
    "hmdb51": hmdb51.read,
}
FORMATS = FORMAT_NAMES  # the config schema's names of READERS' keys


def detect_format(path: Path) -> str:
    """Guess the annotation format from the file's name and first line."""
    name = path.name.lower()
    if name.endswith(".json"):
        return "ssv2"
    if name.startswith(("trainlist", "testlist")):
        return "ucf101"
    if hmdb51.SPLIT_FILE.match(path.name):
        return "hmdb51"
    with path.open() as f:
        first = f.readline().strip().lower()
    if name.endswith(".csv"):
        columns = {c.strip() for c in first.split(",")}
        if columns >= kinetics.COLUMNS:  # the official header, in any column order
            return "kinetics"
        if {"path", "label"} <= columns:
            return "csv"
        if "/" not in first and "." not in first:  # a header (MiT's files have none: their rows are paths)
            raise AnnotationError(f"{path}:1: unknown CSV header {first!r}: expected 'path,label' (csv), Kinetics' "
                                  f"{','.join(sorted(kinetics.COLUMNS))} (any order), or no header (Moments-in-Time)")
        return "mit"
    return "list"


def load_annotations(path: str | Path, format: str | None = None, *, root: str | Path | None = None,
                     classes: list[str] | str | Path | None = None, subset: str = "train") -> Annotations:
    """Read an annotation file as downloaded, or a folder of classes; `format` is detected when not given.

    `subset` ("train" | "test") matters only for HMDB51, whose split files list both.
    """
    path = Path(path)
    if path.is_dir():
        return folders.read(path, ReadOptions())
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist")
    format = format or detect_format(path)
    if format not in READERS:
        raise DataError(f"unknown annotation format {format!r}; choose one of {', '.join(READERS)}")
    return READERS[format](path, ReadOptions(Path(root) if root else None, classes, subset))
