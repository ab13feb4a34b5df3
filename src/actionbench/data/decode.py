"""Frame-exact clip readers: videos through PyAV (FFmpeg), frame folders through libjpeg-turbo.

`open_video(path)` returns a reader with `len(reader)` (decodable frames) and `reader.get_frames(indices)` ->
uint8 `(len(indices), H, W, 3)` in the order asked (repeats allowed). Indices are 0-based display positions.

The video reader builds its frame index without decoding (display-order timestamps, keyframes; packets an edit list
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
import os
import re
import sys
import threading
from pathlib import Path

import numpy as np

from actionbench.data.mp4index import SampleTableMismatch, mp4_frame_index

_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
_UNSEEKABLE_FORMATS = ("mpegts", "mpeg", "mpegvideo", "h264", "hevc", "m4v")  # no reliable index to seek by


_converters = threading.local()


def reformat_frame(frame, width: int, height: int, pix_fmt: str = "rgb24"):
    """`frame` converted to `pix_fmt` at the given size.

    One converter per thread keeps FFmpeg's scaling context alive between frames and clips (a fresh one per frame,
    as `VideoFrame.to_ndarray` and `VideoFrame.reformat` make, cost ~8x the conversion here) and converts on this
    thread only.
    """
    converter = getattr(_converters, "reformatter", None)
    if converter is None:
        from av.video.reformatter import VideoReformatter

        converter = _converters.reformatter = VideoReformatter()
    return converter.reformat(frame, width=width, height=height, format=pix_fmt, threads=1)


def _copy_rgb(frame, dest: np.ndarray) -> None:
    """Copy an RGB24 frame's pixels into `dest` (H, W, 3), skipping the plane's row padding."""
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    dest[...] = rows[:, : plane.width * 3].reshape(plane.height, plane.width, 3)


# What a header may claim before we refuse to decode: 8192 x 8192 pixels a frame (8K is 7680 x 4320) and two
# million frames (18 hours at 30 fps); a damaged or hostile file claiming more would exhaust memory.
MAX_PIXELS = 8192 * 8192
MAX_FRAMES = 2_000_000


class VideoDecodeError(RuntimeError):
    """A video that cannot be read; the message names the path and the reason."""


def _check_pixels(file: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise VideoDecodeError(f"{file}: its header claims {width}x{height} pixels a frame, more than the "
                               f"{MAX_PIXELS} actionbench decodes (a damaged or hostile file?)")


def _resized_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if not short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class _ClipReader:
    """What both readers share: context management and index checks."""

    path: str

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release open files (none by default)."""

    def _checked(self, indices) -> list[int]:
        indices = [int(i) for i in indices]
        count = len(self)
        for i in indices:
            if not 0 <= i < count:
                raise IndexError(f"{self.path}: frame {i} requested, the source has {count}")
        return indices


class VideoReader(_ClipReader):
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
        cache = _IndexCache(index_cache, p) if index_cache else None
        if cache is None or not cache.load(self):
            self._build_index()
            if cache is not None:
                cache.save(self)

    def _build_index(self) -> None:
        try:
            index = mp4_frame_index(self.path, self._container, self._stream)
        except SampleTableMismatch:
            self._reopen()  # the check read packets: demux from the start
            index = None
        self._pts, self._keyframe_pts = index or self._demux_index()
        if not self._pts:
            raise VideoDecodeError(f"{self.path}: no video frames")
        if len(self._pts) > MAX_FRAMES:
            raise VideoDecodeError(f"{self.path}: {len(self._pts)} frames, more than the {MAX_FRAMES} actionbench "
                                   "indexes (a damaged or hostile file?)")

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
            _check_pixels(self.path, codec.width, codec.height)
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
        return reformat_frame(frame, *_resized_size(frame.width, frame.height, self.short_side))

    def _decode_targets(self, targets: list[int], seek: bool) -> dict:
        """Decode the frames with display timestamps `targets` (sorted); returns pts -> RGB frame.

        With `seek`, jump to a target's keyframe whenever it lies ahead of the decoder, else decode forward.
        Without, decode the file from its start.
        """
        codec = self._stream.codec_context
        wanted = set(targets)
        out: dict[int, np.ndarray] = {}
        remaining = list(targets)
        position = None  # pts of the last frame the decoder returned since the last seek
        sought: set[int] = set()
        if not seek:  # from the very start: reopening is the one reliable rewind when seeking is not
            self._reopen()
            codec = self._stream.codec_context
        while remaining:
            target = remaining[0]
            if seek:
                keyframe = self._keyframe_before(target)
                if position is None or self._worth_seeking(position, keyframe) or target <= position:
                    if target in sought:
                        raise _SeekOvershoot  # sought this frame already and the decoder skipped it
                    sought.add(target)
                    self._container.seek(keyframe, stream=self._stream, backward=True)
                    codec.flush_buffers()
                    position = None
            jump = drained = False
            fed: set[int] = set()  # targets whose packets the decoder received since the last seek
            for packet in self._container.demux(self._stream):
                pts = packet.pts
                is_target = pts is not None and pts in wanted
                # Non-reference frames that are not targets never need decoding (~1.3x faster with B-frames).
                codec.skip_frame = "NONREF" if self.skip_nonref and pts is not None and not is_target else "DEFAULT"
                frames = codec.decode(packet)
                if is_target:
                    fed.add(pts)
                    unfed = [t for t in remaining if t not in fed]
                    if not unfed or (seek and self._worth_seeking(pts, self._keyframe_before(unfed[0]))):
                        # The targets still missing are inside the decoder, or behind a seek: draining the decoder
                        # beats decoding the packets (often a costly P-frame) that would push them out of its
                        # reorder delay.
                        frames += codec.decode(None)
                        drained = True
                for frame in frames:
                    if frame.pts is None:
                        continue
                    if seek and position is None and frame.pts > target:
                        raise _SeekOvershoot
                    position = frame.pts
                    if frame.pts in wanted and frame.pts not in out:
                        out[frame.pts] = self._convert(frame)
                    while remaining and remaining[0] in out:
                        remaining.pop(0)
                    if not remaining:
                        break
                    if remaining[0] < position:  # passed a target without seeing it
                        jump = True
                        break
                    if seek and self._worth_seeking(position, self._keyframe_before(remaining[0])):
                        jump = True  # the next target's keyframe lies ahead: seeking beats decoding to it
                        break
                if remaining and (jump or drained):
                    if not seek:
                        raise VideoDecodeError(f"{self.path}: frame at pts {remaining[0]} never decoded")
                    if drained:
                        position = None  # a drained decoder takes packets again only after a seek
                    break
                if not remaining:
                    break
            else:
                if remaining:
                    raise VideoDecodeError(f"{self.path}: ended before frame at pts {remaining[0]}")
        codec.skip_frame = "DEFAULT"
        return out

    def get_frames(self, indices) -> np.ndarray:
        """RGB frames at 0-based display positions `indices` (any order, repeats allowed): uint8 (T, H, W, 3)."""
        indices = self._checked(indices)
        targets = sorted({self._pts[i] for i in indices})
        try:
            decoded = self._decode_targets(targets, seek=self._seekable)
        except _SeekOvershoot:
            self._seekable = False  # this file's seeking cannot be trusted: decode it sequentially from now on
            decoded = self._decode_targets(targets, seek=False)
        except VideoDecodeError:
            raise
        except Exception as exc:
            raise VideoDecodeError(f"{self.path}: decoding failed ({exc})") from exc
        first = decoded[targets[0]]
        # One copy from each converted frame into the result: stacking per-frame arrays cost several times the
        # conversion itself here (fresh allocations and their page faults).
        out = np.empty((len(indices), first.height, first.width, 3), np.uint8)
        for slot, i in enumerate(indices):
            _copy_rgb(decoded[self._pts[i]], out[slot])
        return out


class _IndexCache:
    """A video's frame index kept on disk, so that later epochs (and runs) skip building it: demuxing a 10 s video
    costs 2.5 ms (0.5 ms for an MP4 whose sample table is used) of a ~30 ms dense clip here. One small file per
    video, named by a hash of its path, size and modification time (a changed video gets a new entry), written
    atomically under a unique temporary name: safe for many data-loader workers, ranks and nodes at once. Layout,
    int64: version, flags (1 seekable, 2 evenly spaced timestamps), frame count, keyframe count, checksum; then the
    timestamps, or (start, step) when evenly spaced; then the keyframes' positions among the frames. A damaged or
    foreign entry is rebuilt, never trusted."""

    VERSION = 2
    HEADER = 5
    _warned = False  # an unwritable cache is reported once per process

    def __init__(self, folder: str | Path, video: Path) -> None:
        import hashlib

        stat = video.stat()
        key = hashlib.sha1(f"{video.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
        self.file = Path(folder) / key[:2] / f"{key}.idx"

    def load(self, reader: VideoReader) -> bool:
        try:
            data = np.fromfile(self.file, dtype=np.int64)
        except OSError:
            return False
        if len(data) < self.HEADER or data[0] != self.VERSION:
            return False
        flags, count, keys, checksum = (int(v) for v in data[1 : self.HEADER])
        stamps = 2 if flags & 2 else count
        body = data[self.HEADER :]
        if count <= 0 or len(body) != stamps + keys or int(body.sum()) != checksum:
            return False
        positions = body[stamps:]
        if keys and not (positions.min() >= 0 and positions.max() < count):
            return False
        pts = body[0] + body[1] * np.arange(count, dtype=np.int64) if flags & 2 else body[:count]
        reader._pts = pts.tolist()
        reader._keyframe_pts = [reader._pts[i] for i in positions.tolist()]
        reader._seekable = reader._seekable and bool(flags & 1)
        return True

    def save(self, reader: VideoReader) -> None:
        import uuid

        pts = np.asarray(reader._pts, dtype=np.int64)
        steps = np.diff(pts)
        evenly = len(pts) > 1 and bool((steps == steps[0]).all())
        keys = np.searchsorted(pts, np.asarray(reader._keyframe_pts, dtype=np.int64))
        body = np.concatenate([np.asarray([pts[0], steps[0]] if evenly else pts, np.int64), keys.astype(np.int64)])
        flags = int(reader._seekable) | (2 if evenly else 0)
        header = np.asarray([self.VERSION, flags, len(pts), len(keys), int(body.sum())], np.int64)
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.file.with_name(f"{self.file.name}.{uuid.uuid4().hex}.tmp")
            np.concatenate([header, body]).tofile(temporary)
            os.replace(temporary, self.file)
        except OSError as exc:  # a read-only or full cache costs speed, never the run
            if not _IndexCache._warned:
                _IndexCache._warned = True
                import logging

                logging.getLogger(__name__).warning("cannot write the video index cache %s (%s): indexes are rebuilt "
                                                    "for every clip", self.file.parent.parent, exc)


class _SeekOvershoot(Exception):
    """A seek landed after its target: the container's index is not trustworthy."""


def _natural_key(name: str) -> list:
    """Sort key putting `2.jpg` before `10.jpg` (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class _NumberedNames:
    """A folder's frame names when they are one run of numbers, e.g. 00001.jpg ... 00300.jpg: four fields to keep
    per folder instead of 300 strings."""

    __slots__ = ("prefix", "first", "width", "suffix", "count")

    def __init__(self, prefix: str, first: int, width: int, suffix: str, count: int) -> None:
        # interned: the same few prefixes and suffixes serve every folder
        self.prefix, self.first, self.width, self.suffix, self.count = (sys.intern(prefix), first, width,
                                                                         sys.intern(suffix), count)

    @classmethod
    def of(cls, names: list[str]) -> _NumberedNames | None:
        match = re.fullmatch(r"(.*?)(\d+)(\.\w+)", names[0])
        if match is None:
            return None
        prefix, digits, suffix = match.groups()
        numbered = cls(prefix, int(digits), len(digits), suffix, len(names))
        return numbered if all(numbered[i] == name for i, name in enumerate(names)) else None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> str:
        return f"{self.prefix}{self.first + i:0{self.width}d}{self.suffix}"


_numbered_folders: dict[str, tuple[int, _NumberedNames]] = {}
_MAX_REMEMBERED_FOLDERS = 200_000  # ~60 MB per process at most; beyond, forgotten and listed again


def _frame_names(folder: str) -> list[str] | _NumberedNames:
    """The frame files of `folder` in natural order.

    A numbered run is remembered for the process, so that later epochs skip listing the folder (0.35 ms of a 4 ms
    clip for 300 frames); it is trusted while the folder's modification time is unchanged, its last frame exists and
    no next one does.
    """
    mtime = os.stat(folder).st_mtime_ns
    known = _numbered_folders.get(folder)
    if known is not None and known[0] == mtime:
        names = known[1]
        last, after = os.path.join(folder, names[len(names) - 1]), os.path.join(folder, names[len(names)])
        if os.path.exists(last) and not os.path.exists(after):
            return names
    names = sorted((n for n in os.listdir(folder) if n.lower().endswith(_FRAME_SUFFIXES)), key=_natural_key)
    numbered = _NumberedNames.of(names) if names else None
    if numbered is None:
        return names
    if len(_numbered_folders) >= _MAX_REMEMBERED_FOLDERS:
        _numbered_folders.clear()
    _numbered_folders[folder] = (mtime, numbered)
    return numbered


class FrameFolderReader(_ClipReader):
    """Frames stored as images `00001.jpg`, `img_00001.jpg`, `1.jpg` ... (1-based on disk, 0-based here), in
    natural order (`2.jpg` before `10.jpg`).

    JPEGs are decoded with libjpeg-turbo through simplejpeg straight into the clip, PIL otherwise (PNG, or a JPEG
    simplejpeg refuses); frames of one folder must share a size.
    """

    def __init__(self, path: str | Path, *, short_side: int | None = None, use_pil: bool = False) -> None:
        self.path = str(path)
        self.use_pil = use_pil
        if not os.path.isdir(self.path):
            raise VideoDecodeError(f"{self.path}: no such frame folder")
        # Names as strings, joined only for the frames read: Path objects for a 300-frame folder cost as much as
        # decoding a frame, paid per clip.
        self._names = _frame_names(self.path)
        if not len(self._names):
            raise VideoDecodeError(f"{self.path}: no frames (*.jpg, *.png) in folder")
        self.short_side = short_side

    def __len__(self) -> int:
        return len(self._names)

    def _decode(self, name: str, dest: np.ndarray | None = None) -> np.ndarray:
        """Decode one image, into `dest` (H, W, 3) when given, else into a new array."""
        file = os.path.join(self.path, name)
        with open(file, "rb") as f:
            data = f.read()
        image = None
        if name.lower().endswith((".jpg", ".jpeg")) and not self.use_pil:
            try:
                import simplejpeg

                height, width = simplejpeg.decode_jpeg_header(data)[:2]
                _check_pixels(file, width, height)
                if dest is not None and not self.short_side and self._fits(simplejpeg, data, dest):
                    # Decoding straight into the clip saves an allocation and a copy per frame (measured 1.7x).
                    return simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=dest)
                image = simplejpeg.decode_jpeg(data, colorspace="RGB")
            except (ImportError, ValueError):
                pass  # not installed, or a JPEG variant it refuses: PIL below
        if image is None:
            import io

            from PIL import Image

            try:
                opened = Image.open(io.BytesIO(data))
                _check_pixels(file, *opened.size)
                image = np.asarray(opened.convert("RGB"))
            except VideoDecodeError:
                raise
            except Exception as exc:
                raise VideoDecodeError(f"{file}: cannot decode image ({exc})") from exc
        if self.short_side:
            from PIL import Image

            h, w = image.shape[:2]
            image = np.asarray(Image.fromarray(image).resize(_resized_size(w, h, self.short_side), Image.BILINEAR))
        if dest is None:
            return image
        if image.shape != dest.shape:
            raise VideoDecodeError(f"{file}: frame is {image.shape[1]}x{image.shape[0]}, the clip's first frame "
                                   f"{dest.shape[1]}x{dest.shape[0]}; frames of one video must share a size")
        dest[...] = image
        return dest

    @staticmethod
    def _fits(simplejpeg, data: bytes, dest: np.ndarray) -> bool:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        return dest.shape == (height, width, 3)

    def get_frames(self, indices) -> np.ndarray:
        indices = self._checked(indices)
        out = None
        first_slot: dict[int, int] = {}  # each file read once
        for slot, i in enumerate(indices):
            if i in first_slot:
                out[slot] = out[first_slot[i]]
            elif out is None:
                image = self._decode(self._names[i])
                out = np.empty((len(indices), *image.shape), np.uint8)
                out[slot] = image
            else:
                self._decode(self._names[i], out[slot])
            first_slot.setdefault(i, slot)
        return out


def open_video(path: str | Path, *, threads: int = 1, short_side: int | None = None,
               index_cache: str | Path | None = None):
    """A reader for a video file or a frame folder; `index_cache`: a folder keeping the videos' frame indexes."""
    if Path(path).is_dir():
        return FrameFolderReader(path, short_side=short_side)
    return VideoReader(path, threads=threads, short_side=short_side, index_cache=index_cache)


def resolve_index_cache(setting: str | Path | None) -> Path | None:
    """An index-cache setting: "auto" -> `$XDG_CACHE_HOME/actionbench/video-index` (~/.cache/... by default, shared
    by runs over the same videos), null / "none" -> no cache, else that folder."""
    if setting in (None, "", "none", "null", "false"):
        return None
    if setting == "auto":
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        if base.startswith("~"):
            return None  # no home folder (e.g. a container user without one): no cache rather than a "~" folder
        return Path(base) / "actionbench" / "video-index"
    return Path(setting)


def decode_all(path: str | Path) -> np.ndarray:
    """Every frame, sequentially, in display order (the ground truth tests compare readers with)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(stream) if f.pts is not None]
    frames.sort(key=lambda pf: pf[0])
    return np.stack([f for _, f in frames])
