"""Frame-exact clip readers: videos through PyAV (video.py), frame folders through libjpeg-turbo (frames.py), a
video's frame index and its cache (frame_index.py).

`open_video(path)` returns a reader with `len(reader)` (decodable frames) and `reader.get_frames(indices)` ->
uint8 `(len(indices), H, W, 3)` in the order asked (repeats allowed). Indices are 0-based display positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from actionbench.data.decoding.common import MAX_FRAMES, MAX_PIXELS, VideoDecodeError, reformat_frame
from actionbench.data.decoding.frame_index import FrameIndex, IndexCache, resolve_index_cache
from actionbench.data.decoding.frames import FrameFolderReader
from actionbench.data.decoding.video import VideoReader

__all__ = ["MAX_FRAMES", "MAX_PIXELS", "FrameFolderReader", "FrameIndex", "IndexCache", "VideoDecodeError",
           "VideoReader", "decode_all", "open_video", "reformat_frame", "resolve_index_cache"]


def open_video(path: str | Path, *, threads: int = 1, short_side: int | None = None,
               index_cache: str | Path | None = None):
    """A reader for a video file or a frame folder; `index_cache`: a folder keeping the videos' frame indexes."""
    if Path(path).is_dir():
        return FrameFolderReader(path, short_side=short_side)
    return VideoReader(path, threads=threads, short_side=short_side, index_cache=index_cache)


def decode_all(path: str | Path) -> np.ndarray:
    """Every frame, sequentially, in display order (the ground truth tests compare readers with)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(stream) if f.pts is not None]
    frames.sort(key=lambda pf: pf[0])
    return np.stack([f for _, f in frames])
