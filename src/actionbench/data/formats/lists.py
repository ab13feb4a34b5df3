"""List files, one video per line: "plain" `path label`, "rawframes" `path total_frames label`, "ibm"
`path start_frame end_frame label` (1-based, inclusive); "list" detects the layout from the whole file."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from actionbench.data.labels import classes_beside, label_column
from actionbench.data.records import MEDIA_SUFFIXES, AnnotationError, Annotations, RecordTable

if TYPE_CHECKING:
    from actionbench.data.formats import ReadOptions

LAYOUTS = {"plain": 0, "rawframes": 1, "ibm": 2}  # numeric columns between the path and the label


def _list_lines(path: Path) -> tuple[list[list[str]], list[int] | None, set[int]]:
    """The columns of every line that is not blank or a comment, their line numbers (None: the file has no quotes
    or comments, so they are counted again only for an error message; this keeps 700k lines fast), and which
    entries begin with a quoted path."""
    text = path.read_text()
    if '"' not in text and "'" not in text and "#" not in text:
        return [tokens for tokens in map(str.split, text.splitlines()) if tokens], None, set()
    lines, linenos, quoted = [], [], set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line or line.isspace() or line.lstrip().startswith("#"):
            continue
        try:  # quotes keep a path with spaces in one column: "my clips/a b.mp4" 3
            lines.append(shlex.split(line) if '"' in line or "'" in line else line.split())
        except ValueError as exc:
            raise AnnotationError(f"{path}:{lineno}: {exc} in {line!r}") from None
        if line.lstrip()[:1] in ("'", '"'):
            quoted.add(len(linenos))
        linenos.append(lineno)
    return lines, linenos, quoted


def _fields(tokens: list[str], numeric: int, path_quoted: bool, classes: list[str] | None) -> tuple | str:
    """(path, numeric columns, label) of one line with more columns than its layout has: a quoted path ends where
    its quotes do (the rest is the label); an unquoted one is split where only one split makes sense: at a label of
    the class list, before a class index, or after a video file's name. Otherwise the reason it is ambiguous."""
    if path_quoted:
        splits = [1]
    elif classes is not None:
        splits = [j for j in range(1, len(tokens) - numeric) if " ".join(tokens[j + numeric:]) in classes]
    elif tokens[-1].isdigit():
        splits = [len(tokens) - 1 - numeric]
    else:
        splits = [j for j in range(1, len(tokens) - numeric) if tokens[j - 1].lower().endswith(MEDIA_SUFFIXES)]
    splits = [j for j in splits if all(t.isdigit() for t in tokens[j:j + numeric]) and j + numeric < len(tokens)]
    if len(splits) != 1:
        return ("the path or the label has spaces and the columns can be split in several ways" if splits else
                "no split of its columns into path and label fits")
    j = splits[0]
    return " ".join(tokens[:j]), tokens[j:j + numeric], " ".join(tokens[j + numeric:])


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


def read(path: Path, options: ReadOptions, *, layout: str = "list") -> Annotations:
    """A list file as columns, no Python object per record (700k lines in about 1.5 s, docs/performance.md)."""
    lines, linenos, quoted = _list_lines(path)
    layout = _list_layout(lines) if layout == "list" else layout
    numeric = LAYOUTS[layout]
    classes = classes_beside(path, options.classes)
    expected = {"plain": "path label", "rawframes": "path total_frames label",
                "ibm": "path start_frame end_frame label"}[layout]
    for i, tokens in enumerate(lines):
        if len(tokens) < numeric + 2 or (numeric and not all(t.isdigit() for t in tokens[-1 - numeric:-1])):
            raise AnnotationError(f"{_line_of(path, linenos, i)}: expected '{expected}' (the file's layout: "
                                  f"{layout}), got {' '.join(tokens)!r}")
        if len(tokens) > numeric + 2:  # spaces in the path or the label
            fields = _fields(tokens, numeric, i in quoted, classes)
            if isinstance(fields, str):
                raise AnnotationError(f"{_line_of(path, linenos, i)}: {fields} ({' '.join(tokens)!r}); quote the "
                                      f"path and a label with spaces: \"my clips/a b.mp4\" \"waving hand\"")
            lines[i] = [fields[0], *fields[1], fields[2]]
    paths = [tokens[0] for tokens in lines]
    frames = np.full(len(lines), -1, dtype=np.int64)
    firsts = np.zeros(len(lines), dtype=np.int64)
    if numeric:
        counts = np.array([[int(t) for t in tokens[1:1 + numeric]] for tokens in lines],
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
    label_ids, classes = label_column(labels, classes, lambda i: _line_of(path, linenos, i))
    return Annotations(RecordTable.from_columns(paths, None, label_ids, frames, firsts), classes, str(path))
