"""What the clip readers share: their error, the limits a file's header may claim, the reader base class, and
frame conversion."""

from __future__ import annotations

import threading

import numpy as np

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


def copy_rgb(frame, dest: np.ndarray) -> None:
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


def check_pixels(file: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise VideoDecodeError(f"{file}: its header claims {width}x{height} pixels a frame, more than the "
                               f"{MAX_PIXELS} actionbench decodes (a damaged or hostile file?)")


def resized_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if not short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class ClipReader:
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
