"""The frame-exact video reader, through PyAV (FFmpeg).

The reader builds its frame index without decoding (display-order timestamps, keyframes; packets an edit list
marks as discarded are not frames): from an MP4's sample table (see `mp4index`), else by demuxing; optionally kept
on disk for later epochs. It sorts the requested frames, seeks only when the next target's keyframe lies ahead of
the decoder, otherwise decodes forward, tells the decoder to skip non-reference frames that are not targets, drains
the decoder once the missing targets are inside it (rather than decoding packets only to push them out of its
reorder delay), and converts only the targets to RGB. Containers whose seeking cannot be trusted (MPEG-TS has no
index) are decoded sequentially, and a seek that lands past its target falls back to sequential decoding: a
returned frame is always the requested one. Decoding uses one thread: a data-loader worker is the unit of
parallelism.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np

from actionbench.data.decoding.common import (
    MAX_FRAMES,
    ClipReader,
    VideoDecodeError,
    check_pixels,
    copy_rgb,
    reformat_frame,
    resized_size,
)
from actionbench.data.decoding.frame_index import FrameIndex, IndexCache
from actionbench.data.mp4index import SampleTableMismatch, mp4_frame_index

_UNSEEKABLE_FORMATS = ("mpegts", "mpeg", "mpegvideo", "h264", "hevc", "m4v")  # no reliable index to seek by


class VideoReader(ClipReader):
    """PyAV reader; see the module doc. Use as a context manager or call `close()`."""

    def __init__(self, path: str | Path, *, threads: int = 1, short_side: int | None = None,
                 skip_nonref: bool = True, seek_gap: int = 4, index_cache: str | Path | None = None) -> None:
        import av

        self.path = str(path)
        p = Path(path)
        if not p.is_file():
            raise VideoDecodeError(f"{self.path}: no such file")
        if p.stat().st_size == 0:
            raise VideoDecodeError(f"{self.path}: empty file (0 bytes)")
        try:
            self._container = av.open(self.path)
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"{self.path}: cannot open ({exc})") from exc
        if not self._container.streams.video:
            self.close()
            raise VideoDecodeError(f"{self.path}: no video stream")
        self._use_stream(threads)
        self.short_side = short_side
        self.skip_nonref = skip_nonref
        # A seek (after draining the decoder) costs about as much as decoding a few frames forward: 0 and 4 measured
        # alike, 16 was 6 % slower on uniform clips at GOP 30 (benchmarks/clip_loading.py content).
        self.seek_gap = seek_gap
        self._seekable = not any(f in self._container.format.name.split(",") for f in _UNSEEKABLE_FORMATS)
        cache = IndexCache(index_cache, p) if index_cache else None
        index = cache.load() if cache is not None else None
        if index is None:
            index = self._build_index()
            if cache is not None:
                cache.save(index)
        self._pts, self._keyframe_pts = index.pts, index.keyframe_pts
        self._seekable = self._seekable and index.seekable

    def _build_index(self) -> FrameIndex:
        """The index from the MP4 sample table when it can be trusted, else from demuxing every packet."""
        try:
            found = mp4_frame_index(self.path, self._container, self._stream)
        except SampleTableMismatch:
            self._reopen()  # the check read packets: demux from the start
            found = None
        pts, keyframes = found or self._demux_index()
        if not pts:
            raise VideoDecodeError(f"{self.path}: no video frames")
        if len(pts) > MAX_FRAMES:
            raise VideoDecodeError(f"{self.path}: {len(pts)} frames, more than the {MAX_FRAMES} actionbench "
                                   "indexes (a damaged or hostile file?)")
        return FrameIndex(pts, keyframes, self._seekable)

    def _demux_index(self) -> tuple[list[int], list[int]]:
        """(display timestamps, keyframes' timestamps), sorted, from every packet of the file."""
        frames: list[tuple[int, bool]] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.pts is None or packet.size == 0 or packet.is_discard:
                    if packet.pts is None and packet.size:
                        self._seekable = False  # timestamps missing: only sequential decoding is exact
                    continue
                frames.append((packet.pts, packet.is_keyframe))
                if len(frames) > MAX_FRAMES:  # stop before the index itself exhausts memory
                    raise VideoDecodeError(f"{self.path}: more than {MAX_FRAMES} frames (a damaged or hostile "
                                           "file?)")
        except Exception as exc:  # av errors on broken files
            raise VideoDecodeError(f"{self.path}: cannot demux ({exc})") from exc
        frames.sort()
        return [pts for pts, _ in frames], [pts for pts, key in frames if key]

    def __len__(self) -> int:
        return len(self._pts)

    def _use_stream(self, threads: int) -> None:
        """Decode the first video stream with `threads`, unless its header claims frames too large to hold."""
        self._stream = self._container.streams.video[0]
        codec = self._stream.codec_context
        try:
            check_pixels(self.path, codec.width, codec.height)
        except VideoDecodeError:
            self.close()
            raise
        self._stream.thread_count = threads

    def _reopen(self) -> None:
        import av

        threads = self._stream.thread_count
        self._container.close()
        self._container = av.open(self.path)
        self._use_stream(threads)

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None

    def _keyframe_before(self, pts: int) -> int:
        i = bisect.bisect_right(self._keyframe_pts, pts) - 1
        return self._keyframe_pts[max(i, 0)] if self._keyframe_pts else self._pts[0]

    def _worth_seeking(self, position: int, keyframe: int) -> bool:
        """Seek to `keyframe` rather than decode forward from `position` (both pts) when it lies far enough ahead."""
        if keyframe <= position:
            return False
        gap = bisect.bisect_left(self._pts, keyframe) - bisect.bisect_left(self._pts, position)
        return gap > self.seek_gap

    def _convert(self, frame):
        return reformat_frame(frame, *resized_size(frame.width, frame.height, self.short_side))

    def _decode_packet(self, codec, packet, wanted: set[int]) -> list:
        """The frames the decoder returns for `packet`; non-reference frames that are not targets are never decoded
        (~1.3x faster with B-frames)."""
        pts = packet.pts
        codec.skip_frame = "NONREF" if self.skip_nonref and pts is not None and pts not in wanted else "DEFAULT"
        return codec.decode(packet)

    def _keep(self, frame, wanted: set[int], out: dict, remaining: list[int]) -> None:
        """Convert `frame` if it is a target not converted yet; drop the targets now done from `remaining`."""
        if frame.pts in wanted and frame.pts not in out:
            out[frame.pts] = self._convert(frame)
        while remaining and remaining[0] in out:
            remaining.pop(0)

    def _decode_sequential(self, targets: list[int]) -> dict:
        """The frames with display timestamps `targets` (sorted), decoding the file from its start: pts -> frame."""
        self._reopen()  # reopening is the one reliable rewind when seeking is not
        codec = self._stream.codec_context
        wanted, out, remaining, fed = set(targets), {}, list(targets), set()
        try:
            for packet in self._container.demux(self._stream):
                frames = self._decode_packet(codec, packet, wanted)
                drained = False
                if packet.pts in wanted:
                    fed.add(packet.pts)
                    if fed.issuperset(remaining):  # the missing targets are inside the decoder: drain it
                        frames += codec.decode(None)
                        drained = True
                for frame in frames:
                    if frame.pts is None:
                        continue
                    self._keep(frame, wanted, out, remaining)
                    if not remaining:
                        return out
                    if remaining[0] < frame.pts:
                        raise VideoDecodeError(f"{self.path}: frame at pts {remaining[0]} never decoded")
                if drained:
                    raise VideoDecodeError(f"{self.path}: frame at pts {remaining[0]} never decoded")
            raise VideoDecodeError(f"{self.path}: ended before frame at pts {remaining[0]}")
        finally:
            codec.skip_frame = "DEFAULT"

    def _decode_seeking(self, targets: list[int]) -> dict | None:
        """The frames with display timestamps `targets` (sorted): pts -> frame, seeking to a target's keyframe
        whenever it lies ahead of the decoder. None when a seek lands past its target (the container's index
        cannot be trusted: decode sequentially instead)."""
        codec = self._stream.codec_context
        wanted, out, remaining = set(targets), {}, list(targets)
        position = None  # pts of the last frame the decoder returned since the last seek; None: seek first
        sought: set[int] = set()
        try:
            while remaining:
                target = remaining[0]
                keyframe = self._keyframe_before(target)
                if position is None or self._worth_seeking(position, keyframe) or target <= position:
                    if target in sought:
                        return None  # sought this frame already and the decoder skipped it
                    sought.add(target)
                    self._container.seek(keyframe, stream=self._stream, backward=True)
                    codec.flush_buffers()
                    position = None
                position, overshot = self._decode_forward(codec, wanted, out, remaining, position)
                if overshot:
                    return None
            return out
        finally:
            codec.skip_frame = "DEFAULT"

    def _decode_forward(self, codec, wanted: set[int], out: dict, remaining: list[int],
                        position: int | None) -> tuple[int | None, bool]:
        """Decode forward until every target is out or the next one is better reached by a seek; returns the
        decoder's position (None once drained: it takes packets again only after a seek) and whether the first
        frame after a seek came after its target."""
        target, fed = remaining[0], set()
        for packet in self._container.demux(self._stream):
            frames = self._decode_packet(codec, packet, wanted)
            drained = False
            if packet.pts in wanted:
                fed.add(packet.pts)
                unfed = [t for t in remaining if t not in fed]
                if not unfed or self._worth_seeking(packet.pts, self._keyframe_before(unfed[0])):
                    # The targets still missing are inside the decoder, or behind a seek: draining the decoder beats
                    # decoding the packets (often a costly P-frame) that would push them out of its reorder delay.
                    frames += codec.decode(None)
                    drained = True
            for frame in frames:
                if frame.pts is None:
                    continue
                if position is None and frame.pts > target:
                    return position, True
                position = frame.pts
                self._keep(frame, wanted, out, remaining)
                if not remaining:
                    return position, False
                # passed a target without seeing it, or its keyframe lies ahead: seeking beats decoding to it
                if remaining[0] < position or self._worth_seeking(position, self._keyframe_before(remaining[0])):
                    return (None if drained else position), False
            if drained:
                return None, False
        raise VideoDecodeError(f"{self.path}: ended before frame at pts {remaining[0]}")

    def get_frames(self, indices) -> np.ndarray:
        """RGB frames at 0-based display positions `indices` (any order, repeats allowed): uint8 (T, H, W, 3)."""
        indices = self._checked(indices)
        targets = sorted({self._pts[i] for i in indices})
        try:
            decoded = self._decode_seeking(targets) if self._seekable else None
            if decoded is None:
                self._seekable = False  # this file's seeking cannot be trusted: decode it sequentially from now on
                decoded = self._decode_sequential(targets)
        except VideoDecodeError:
            raise
        except Exception as exc:
            raise VideoDecodeError(f"{self.path}: decoding failed ({exc})") from exc
        first = decoded[targets[0]]
        # One copy from each converted frame into the result: stacking per-frame arrays cost several times the
        # conversion itself here (fresh allocations and their page faults).
        out = np.empty((len(indices), first.height, first.width, 3), np.uint8)
        for slot, i in enumerate(indices):
            copy_rgb(decoded[self._pts[i]], out[slot])
        return out
