"""The frame index of an MP4/MOV video from FFmpeg's sample table, without demuxing every packet.

FFmpeg reads an MP4's whole sample table when it opens the file and exposes it (`stream.index_entries`: decode
timestamps after the edit list, keyframe and discard flags), but not the composition offsets that turn decode into
display timestamps with B-frames. We read those (`ctts`) from the file ourselves: ~0.5 ms instead of ~2.5 ms for
demuxing the ~300 packets of a 10 s clip, the largest part of opening a video for one clip.

Only the plain case is taken, where FFmpeg's entries are the track's samples one for one: one video track found by
its id, at most one edit, no fragments, no discarded or duplicate samples, no negative offsets (FFmpeg shifts those).
Anything else returns None and the caller demuxes; a mismatch with the first packets, checked every time, raises
`SampleTableMismatch` (the container has been read from: reopen it to demux).
"""

from __future__ import annotations

import os
import struct

import numpy as np

_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}
_MAX_MOOV_BYTES = 64 << 20  # hours of video; a larger size is more likely a damaged header than a real table
_CHECKED_PACKETS = 4


class SampleTableMismatch(ValueError):
    """The sample table disagrees with the packets FFmpeg returns: demux the file instead."""


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, payload end) of the boxes in data[start:end]; stops at a damaged header."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def _read_moov(path: str) -> bytes | None:
    """The payload of the file's top-level `moov` box (before or after the media data), or None."""
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos + 8 <= file_size:
            f.seek(pos)
            header = f.read(16)
            size, kind = struct.unpack_from(">I4s", header)
            length = 8
            if size == 1 and len(header) == 16:
                size, length = struct.unpack_from(">Q", header, 8)[0], 16
            elif size == 0:
                size = file_size - pos
            if size < length:
                return None
            if kind == b"moov":
                if size > _MAX_MOOV_BYTES:
                    return None
                f.seek(pos + length)
                return f.read(size - length)
            pos += size
    return None


def _nested_boxes(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """Payload spans of every box inside data[start:end], container boxes opened, by type (the first of each)."""
    spans: dict[bytes, tuple[int, int]] = {}
    stack = [(start, end)]
    while stack:
        for kind, child_start, child_end in _boxes(data, *stack.pop()):
            spans.setdefault(kind, (child_start, child_end))
            if kind in _CONTAINER_BOXES:
                stack.append((child_start, child_end))
    return spans


def _track_tables(moov: bytes, track_id: int) -> dict[bytes, tuple[int, int]] | None:
    """Payload spans of the boxes inside track `track_id` (FFmpeg's stream id), or None."""
    top = list(_boxes(moov, 0, len(moov)))
    if any(kind == b"mvex" for kind, _, _ in top):
        return None  # fragmented: samples live in fragments FFmpeg reads as it goes
    for kind, start, end in top:
        if kind != b"trak":
            continue
        spans = _nested_boxes(moov, start, end)
        tkhd = spans.get(b"tkhd")
        if tkhd is not None:
            id_offset = 20 if moov[tkhd[0]] == 1 else 12  # after version, flags and two 64- or 32-bit times
            if struct.unpack_from(">I", moov, tkhd[0] + id_offset)[0] == track_id:
                return spans
    return None


def _composition_offsets(moov: bytes, spans: dict[bytes, tuple[int, int]]) -> np.ndarray | None:
    """Per-sample composition offsets (display minus decode time), or None when the table cannot be used."""
    size_box = spans.get(b"stsz") or spans.get(b"stz2")
    if size_box is None:
        return None
    samples = struct.unpack_from(">I", moov, size_box[0] + 8)[0]
    ctts = spans.get(b"ctts")
    if ctts is None:
        return np.zeros(samples, np.int64)
    count = struct.unpack_from(">I", moov, ctts[0] + 4)[0]
    if ctts[0] + 8 + 8 * count > ctts[1]:
        return None
    # Read as signed whatever the box version: FFmpeg does, and some muxers write negative offsets in version 0.
    runs = np.frombuffer(moov, ">i4", 2 * count, ctts[0] + 8).reshape(count, 2).astype(np.int64)
    if (runs[:, 0] < 0).any() or (runs[:, 1] < 0).any():
        return None
    offsets = np.repeat(runs[:, 1], runs[:, 0])
    return offsets if len(offsets) == samples else None


def _single_edit(moov: bytes, spans: dict[bytes, tuple[int, int]]) -> bool:
    elst = spans.get(b"elst")
    return elst is None or struct.unpack_from(">I", moov, elst[0] + 4)[0] <= 1


def _check_first_packets(path: str, container, stream, pts: np.ndarray, keyframe: np.ndarray) -> None:
    checked = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts != pts[checked] or packet.is_keyframe != keyframe[checked]:
                raise SampleTableMismatch(f"{path}: packet {checked} has pts {packet.pts}, the sample table says "
                                          f"{pts[checked]}")
            checked += 1
            if checked == min(_CHECKED_PACKETS, len(pts)):
                return
    except SampleTableMismatch:
        raise
    except Exception as exc:  # av errors: a damaged file, for the demuxing index to report
        raise SampleTableMismatch(f"{path}: {exc}") from exc


def mp4_frame_index(path: str, container, stream) -> tuple[list[int], list[int]] | None:
    """(display timestamps sorted, keyframes' display timestamps sorted) of `stream`, or None to demux instead.

    Reads a few packets of `container` to check the result: seek before decoding.
    Raises SampleTableMismatch when they disagree with it.
    """
    if "mp4" not in container.format.name.split(","):
        return None
    try:
        moov = _read_moov(path)
        spans = None if moov is None else _track_tables(moov, stream.id)
        if spans is None or not _single_edit(moov, spans):
            return None
        offsets = _composition_offsets(moov, spans)
    except (OSError, struct.error, ValueError):
        return None
    entries = getattr(stream, "index_entries", None)  # recent PyAV only: older versions demux
    if entries is None or offsets is None or len(entries) != len(offsets) or not len(offsets):
        return None
    try:
        table = np.array([(e.timestamp, e.is_keyframe, e.size, e.is_discard) for e in entries], np.int64)
    except AttributeError:  # an older PyAV's entries without these fields
        return None
    if table[:, 3].any():
        return None
    shown = table[:, 2] > 0  # empty samples are no frames, as for the demuxing index
    pts = (table[:, 0] + offsets)[shown]
    keyframe = table[shown, 1].astype(bool)
    ordered = np.sort(pts)
    if not len(ordered) or (np.diff(ordered) <= 0).any():
        return None  # two samples shown at once: leave such files to the demuxing index
    _check_first_packets(path, container, stream, pts, keyframe)
    return ordered.tolist(), np.sort(pts[keyframe]).tolist()
